"""The high-confidence attack A_f with the authors' evaluation numerics (Table 1's `hc-authors`).

`HighConfidenceAttack` (the `hc` column) computes log p_t accurately near 1, does its step
arithmetic in float64 with a guard of 1e-20 and reads a confidence of exactly 1 as
1 - 2⁻²⁴. Those choices decide the column: on a network whose own confidence is within
1e-5 of 1 the authors' arithmetic stalls (the guard dominates ||w||) and returns the last
iterate. The paper's HC column was measured with that arithmetic, so comparing our `hc`
with it is not like for like. This class reproduces what the authors' `test.py` ran
(`attack.high_confidence_attack`, read from aam-at/adversary_critic):

* log p_t = `log_softmax` in float32, which rounds to exactly 0 once p_t > 1 - 6e-8;
* C = the float32 softmax maximum on the clean image, used as it is (a confidence that
  rounds to 1.0 makes the stop test p_t >= 1.0 in float32, and log C = 0);
* r_i = (sqrt(ε) + f/||w||) w/||w||, f = |log p_t - log C|, ||w|| = sqrt(ε + Σw²), ε = 1e-8,
  all in float32; each step clipped like `tf.clip_by_norm` (t·c / max(||t||, c));
* a sample stops once argmax = target and p_t >= C (float32), tested at x + (1 + 0.02) r
  before each update, for at most `steps` updates; after each update the perturbation is
  projected so that x + (1 + 0.02) r stays in [0, 1] (the paper's section 5).

The paper's rho policy for this column is the caller's business (see
`model.table1.results.RHO_POLICIES`): the authors attack every test image, including
misclassified ones, and average all returned images, failures included.

References:
    Matyasko & Chau, "Improved Network Robustness with Adversary Critic", NeurIPS 2018,
    Algorithm 1, eq. (7) and section 5; authors' code aam-at/adversary_critic, attack.py
    (`high_confidence_attack`) and test.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.attacks.base import Attack, RunOutput, batch_view, project_perturbation
from model.attacks.high_confidence import AUTHORS_EPSILON, resolve_targets


def float32_confidence(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The authors' C: max of the float32 softmax on the clean images (N,), float32."""
    with torch.no_grad():
        return F.softmax(model(x).float(), dim=1).amax(dim=1)


def tf_clip_by_norm(values: torch.Tensor, max_norm: float) -> torch.Tensor:
    """`tf.clip_by_norm` per sample: values·c / max(||values||, c), in the values' dtype."""
    norms = values.flatten(1).pow(2).sum(dim=1).sqrt()
    return values * max_norm / batch_view(norms.clamp_min(max_norm), values)


def authors_step(
    log_p_target: torch.Tensor, log_confidence: torch.Tensor, w: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """Eq. (7) as the authors wrote it, in the dtype of `w` (float32 for them)."""
    w_norm = batch_view(torch.sqrt(epsilon + w.flatten(1).pow(2).sum(dim=1)), w)
    f = batch_view((log_p_target - log_confidence).abs(), w)
    return (math.sqrt(epsilon) + f / w_norm) * w / w_norm


def reached_authors_target(
    logits: torch.Tensor, targets: torch.Tensor, confidence: torch.Tensor
) -> torch.Tensor:
    """The authors' stop test: argmax = target and float32 softmax p_t >= C."""
    p_target = F.softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
    return (logits.argmax(dim=1) == targets) & (p_target >= confidence)


class AuthorsHighConfidenceAttack(Attack):
    """A_f's evaluation form with the authors' float32 numerics (see the module docstring).

    Call as ``attack(model, x, labels, targets=None, confidence=None)``: targets default to
    the closest decision boundary from `labels`, the confidence to the float32 softmax
    maximum on the clean input (cast to float32 when given). Success: argmax = target and
    float32 p_t >= C on the returned image.

    Args:
        steps: maximum number of updates (500 in the paper).
        max_step: L2 clip of each update (`tf.clip_by_norm`); None disables it.
        overshoot: the image is x + (1 + overshoot) r (the authors' 0.02).
        epsilon: the guard in ||w|| = sqrt(ε + Σw²) (the authors' 1e-8).

    References:
        Matyasko & Chau, NeurIPS 2018; aam-at/adversary_critic attack.py and test.py.
    """

    def __init__(
        self,
        *,
        steps: int = 500,
        max_step: float | None = 0.1,
        overshoot: float = 0.02,
        epsilon: float = AUTHORS_EPSILON,
    ) -> None:
        if steps < 1 or (max_step is not None and max_step <= 0) or overshoot < 0:
            raise ValueError(
                "the attack needs steps >= 1, max_step > 0 (or None) and overshoot >= 0"
            )
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.steps = steps
        self.max_step = max_step
        self.overshoot = overshoot
        self.epsilon = epsilon

    def run(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None = None,
        confidence: torch.Tensor | float | None = None,
    ) -> RunOutput:
        x = inputs
        targets = resolve_targets(model, x, labels, targets)
        if confidence is None:
            c = float32_confidence(model, x)
        else:
            c = torch.as_tensor(confidence, device=x.device).detach().to(torch.float32)
            c = c.expand(len(x)).clone() if c.ndim == 0 else c
        if c.shape != (len(x),) or not bool(((c > 0) & (c <= 1)).all()):
            raise ValueError(f"confidence must be in (0, 1], one per sample ({len(x)})")
        log_c = torch.log(c)
        scale = 1.0 + self.overshoot
        r = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        active = torch.nonzero(targets != labels).squeeze(1)
        for step_index in range(self.steps + 1):
            if len(active) == 0:
                break
            point = (x[active] + scale * r[active]).requires_grad_(True)
            logits = model(point)
            log_p = F.log_softmax(logits, dim=1).gather(1, targets[active].view(-1, 1)).squeeze(1)
            unfinished = ~reached_authors_target(logits.detach(), targets[active], c[active])
            if step_index == self.steps or not bool(unfinished.any()):
                break
            (w,) = torch.autograd.grad(log_p.sum(), point)
            active = active[unfinished]
            step = authors_step(
                log_p.detach()[unfinished], log_c[active], w[unfinished], self.epsilon
            )
            if self.max_step is not None:
                step = tf_clip_by_norm(step, self.max_step)
            r[active] = project_perturbation(
                x[active], r[active] + step, self.overshoot, self.bounds
            )
            iterations[active] += 1
        return RunOutput(x + scale * r, iterations=iterations, targets=targets, confidence=c)

    def is_adversarial(
        self, logits: torch.Tensor, labels: torch.Tensor, output: RunOutput
    ) -> torch.Tensor:
        """The authors' criterion on the returned image: the target, with float32 p_t >= C."""
        return reached_authors_target(logits, output.targets, output.confidence)
