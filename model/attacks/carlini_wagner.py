"""Carlini & Wagner's L2 attack, batched, as the authors evaluated with it.

The optimisation is Carlini & Wagner's (and Foolbox's): a tanh change of variables keeps
images in the box, Adam minimises ||x' - x||² + c · max(0, Z_label - max_{k≠label} Z_k + κ),
and a per-sample binary search over c (9 steps from 1e-3, ×10 until a first success)
keeps the smallest adversarial found.

"Abort early" is Carlini's rule, stop when the loss has not fallen by 0.01% over a tenth
of the steps, applied to the loss summed over a *group* of consecutive inputs. Carlini's
and Foolbox's code sum over the batch they are given, so their numbers depend on how the
caller batches; here the group is a setting, 100 by default (the authors' C&W batch),
and results do not depend on the batch size of the call (for calls in multiples of it).
A group that stalls leaves the computation while the others go on.

What else differs from Foolbox is cost, not results: inputs that are already
misclassified are not optimised (their perturbation is zero) and gradients are taken for
the inputs only, never for the model's weights.

Failures (no adversarial found for any c) are returned unchanged, with success False;
the authors excluded them from C&W's rho and counted them separately, as `model.metrics` does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.attacks.base import Attack, RunOutput, l2_norms

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
# Carlini's and Foolbox's shrink factor before atanh, so that 0 and 1 stay finite.
_TANH_SHRINK = 0.999999
AUTHORS_BATCH = 100


class L2CarliniWagnerAttack(Attack):
    """Smallest L2 perturbation by Adam on the C&W objective with a binary search over c.

    Args:
        binary_search_steps: number of values of c tried per sample (9).
        steps: Adam steps per value of c (the paper: 1,000; Carlini's default 10,000).
        stepsize: Adam learning rate (1e-2).
        confidence: required logit margin κ of the adversarial class (0).
        initial_const: first value of c (1e-3).
        abort_early: end a group's binary-search step once its summed loss stalls.
        abort_group: consecutive inputs whose loss is summed for the abort test (100, the
            authors' batch); None: the whole call, as Foolbox does.

    References:
        Nicholas Carlini, David Wagner, "Towards Evaluating the Robustness of Neural
        Networks", IEEE S&P 2017, arXiv:1608.04644.
    """

    def __init__(
        self,
        *,
        binary_search_steps: int = 9,
        steps: int = 1000,
        stepsize: float = 1e-2,
        confidence: float = 0.0,
        initial_const: float = 1e-3,
        abort_early: bool = True,
        abort_group: int | None = AUTHORS_BATCH,
    ) -> None:
        if binary_search_steps < 1 or steps < 1 or stepsize <= 0 or initial_const <= 0:
            raise ValueError(
                "C&W needs binary_search_steps, steps >= 1 and positive stepsize, initial_const"
            )
        if abort_group is not None and abort_group < 1:
            raise ValueError(f"abort_group must be >= 1 or None, got {abort_group}")
        self.binary_search_steps = binary_search_steps
        self.steps = steps
        self.stepsize = stepsize
        self.confidence = confidence
        self.initial_const = initial_const
        self.abort_early = abort_early
        self.abort_group = abort_group

    def _to_model_space(self, w: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        return torch.tanh(w) * ((high - low) / 2) + (high + low) / 2

    def _to_attack_space(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        return torch.atanh((x - (high + low) / 2) / ((high - low) / 2) * _TANH_SHRINK)

    def _is_adversarial_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adjusted = logits.scatter_add(
            1, labels.view(-1, 1), torch.full_like(logits[:, :1], self.confidence)
        )
        return adjusted.argmax(dim=1) != labels

    def run(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> RunOutput:
        best = inputs.clone()
        iterations = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
        with torch.no_grad():
            todo = torch.nonzero(~self._is_adversarial_logits(model(inputs), labels)).squeeze(1)
        if len(todo):
            group_size = self.abort_group or len(inputs)
            best[todo], iterations[todo] = self._search(
                model, inputs[todo], labels[todo], todo // group_size
            )
        return RunOutput(best, iterations=iterations)

    def _search(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The binary search over c for inputs that are all still classified correctly."""
        w0 = self._to_attack_space(x)
        problem = _Problem(
            x, labels, w0, self._to_model_space(w0), torch.unique(groups, return_inverse=True)[1]
        )
        consts = torch.full((len(x),), self.initial_const, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(consts)
        upper = torch.full_like(consts, math.inf)
        best = x.clone()
        best_norms = torch.full_like(consts, math.inf)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for search_step in range(self.binary_search_steps):
            if search_step == self.binary_search_steps - 1 and self.binary_search_steps >= 10:
                consts = torch.minimum(upper, torch.full_like(upper, 1e10))
            found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            self._optimize(model, problem, consts, best, best_norms, found, iterations)
            upper = torch.where(found, consts, upper)
            lower = torch.where(found, lower, consts)
            consts = torch.where(torch.isinf(upper), consts * 10, (lower + upper) / 2)
        return best, iterations

    def _optimize(
        self,
        model: nn.Module,
        problem: _Problem,
        consts: torch.Tensor,
        best: torch.Tensor,
        best_norms: torch.Tensor,
        found: torch.Tensor,
        iterations: torch.Tensor,
    ) -> None:
        """Adam for one value of c per sample; updates the result tensors in place.

        Each step's images are recorded before the update, and a group's step that
        triggers its abort is not recorded (Carlini's order). Samples of aborted groups
        leave `active`, so later steps compute only on the rest.
        """
        active = torch.arange(len(consts), device=consts.device)
        current = problem
        delta = torch.zeros_like(problem.w0)
        first_moment = torch.zeros_like(delta)
        second_moment = torch.zeros_like(delta)
        previous = torch.full(
            (problem.num_groups,), math.inf, dtype=delta.dtype, device=delta.device
        )
        check_every = math.ceil(self.steps / 10)
        for step in range(self.steps):
            if len(active) == 0:
                return
            delta.requires_grad_(True)
            perturbed = self._to_model_space(current.w0 + delta)
            logits = model(perturbed)
            rows = current.labels.view(-1, 1)
            real = logits.gather(1, rows).squeeze(1)
            other = logits.scatter(1, rows, -math.inf).amax(dim=1)
            margin = (real - other + self.confidence).clamp_min(0)
            distance = (perturbed - current.reconstructed).flatten(1).pow(2).sum(dim=1)
            loss = consts[active] * margin + distance
            (gradient,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = self._adam_step(
                    delta.detach(), gradient, first_moment, second_moment, step + 1
                )
                iterations[active] += 1
                keep = None
                if self.abort_early and step % check_every == 0:
                    sums = torch.zeros_like(previous).index_add_(0, current.groups, loss.detach())
                    stalled = ~(sums <= 0.9999 * previous)
                    previous = torch.where(stalled, previous, sums)
                    keep = ~stalled[current.groups]
                perturbed, logits = perturbed.detach(), logits.detach()
                if keep is not None and not bool(keep.all()):
                    active, current, perturbed, logits = (
                        active[keep],
                        current.subset(keep),
                        perturbed[keep],
                        logits[keep],
                    )
                    delta, first_moment, second_moment = (
                        delta[keep],
                        first_moment[keep],
                        second_moment[keep],
                    )
                is_adv = self._is_adversarial_logits(logits, current.labels)
                norms = l2_norms(perturbed - current.x)
                better = is_adv & (norms < best_norms[active])
                best[active[better]] = perturbed[better]
                best_norms[active[better]] = norms[better]
                found[active[is_adv]] = True

    def _adam_step(
        self,
        delta: torch.Tensor,
        gradient: torch.Tensor,
        first: torch.Tensor,
        second: torch.Tensor,
        t: int,
    ) -> torch.Tensor:
        """One Adam update of delta (Foolbox's AdamOptimizer: bias-corrected, eps 1e-8)."""
        first.mul_(_BETA1).add_(gradient, alpha=1 - _BETA1)
        second.mul_(_BETA2).addcmul_(gradient, gradient, value=1 - _BETA2)
        denominator = (second / (1 - _BETA2**t)).sqrt_().add_(_ADAM_EPS)
        return delta.sub_(first.div(denominator).mul_(self.stepsize / (1 - _BETA1**t)))


class _Problem:
    """The per-sample constants of one attack call, shrinkable to the samples still active."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        w0: torch.Tensor,
        reconstructed: torch.Tensor,
        groups: torch.Tensor,
        num_groups: int | None = None,
    ) -> None:
        self.x, self.labels, self.w0, self.reconstructed, self.groups = (
            x,
            labels,
            w0,
            reconstructed,
            groups,
        )
        self.num_groups = int(groups.max()) + 1 if num_groups is None else num_groups

    def subset(self, keep: torch.Tensor) -> _Problem:
        return _Problem(
            self.x[keep],
            self.labels[keep],
            self.w0[keep],
            self.reconstructed[keep],
            self.groups[keep],
            self.num_groups,
        )
