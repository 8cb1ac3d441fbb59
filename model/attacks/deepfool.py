"""L2 DeepFool, batched, as the paper evaluates it (the authors' variant).

Differences from Foolbox's L2DeepFoolAttack, all taken from the authors' code:
the per-step distance is clipped (0.1 by default, which makes DeepFool far more accurate
on robust networks), and the accumulated perturbation is projected so that the overshot
image x + (1 + overshoot) r stays in [0, 1]. Set `max_step=None` for Foolbox's behaviour.

Speed: samples leave the batch as soon as their overshot image is misclassified, so the
work per step shrinks with the number of samples still unsolved, and each step costs one
forward pass plus one backward pass per candidate class.
"""

from __future__ import annotations

import torch
from torch import nn

from model.attacks.base import Attack, RunOutput, batch_view, project_perturbation
from model.attacks.gradients import difference_gradients, linearized_distances, other_classes


class L2DeepFoolAttack(Attack):
    """Minimal L2 perturbation by iterated linearisation of the closest decision boundary.

    Args:
        steps: maximum number of updates (500 in the paper's evaluation).
        max_step: clip of each step's distance (L2); None disables the clip.
        overshoot: the returned image is x + (1 + overshoot) r.
        candidates: compare with the `candidates - 1` most likely other classes at the
            start (Foolbox's convention, label included in the count); None for all classes.
        epsilon: added to each step's distance for numerical stability.

    References:
        Seyed-Mohsen Moosavi-Dezfooli, Alhussein Fawzi, Pascal Frossard, "DeepFool: a simple
        and accurate method to fool deep neural networks", CVPR 2016, arXiv:1511.04599.
    """

    def __init__(
        self,
        *,
        steps: int = 500,
        max_step: float | None = 0.1,
        overshoot: float = 0.02,
        candidates: int | None = None,
        epsilon: float = 1e-4,
    ) -> None:
        if steps < 1 or (max_step is not None and max_step <= 0) or overshoot < 0:
            raise ValueError("DeepFool needs steps >= 1, max_step > 0 (or None) and overshoot >= 0")
        if candidates is not None and candidates < 2:
            raise ValueError("candidates must be at least 2 (the label and one other class)")
        self.steps = steps
        self.max_step = max_step
        self.overshoot = overshoot
        self.candidates = candidates
        self.epsilon = epsilon

    def run(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> RunOutput:
        x = inputs
        scale = 1.0 + self.overshoot
        r = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        with torch.no_grad():
            logits = model(x)
        limit = None if self.candidates is None else self.candidates - 1
        others = other_classes(logits, labels, limit)
        active = torch.nonzero(logits.argmax(dim=1) == labels).squeeze(1)
        for step_index in range(self.steps):
            if len(active) == 0:
                break
            x_a, r_a, y_a = x[active], r[active], labels[active]
            if step_index > 0:  # at the first step r = 0: `active` is already the check
                with torch.no_grad():
                    still = model(x_a + scale * r_a).argmax(dim=1) == y_a
                active, x_a, r_a, y_a = active[still], x_a[still], r_a[still], y_a[still]
                if len(active) == 0:
                    break
            _, differences, grads = difference_gradients(model, x_a + r_a, y_a, others[active])
            distances, norms = linearized_distances(differences, grads)
            best = distances.argmin(dim=1)
            rows = torch.arange(len(active), device=x.device)
            distance = distances[rows, best]
            if self.max_step is not None:
                distance = distance.clamp(max=self.max_step)
            step = grads[rows, best] * batch_view(
                (distance + self.epsilon) / norms[rows, best].clamp_min(1e-12), x_a
            )
            r[active] = project_perturbation(x_a, r_a + step, self.overshoot, self.bounds)
            iterations[active] += 1
        return RunOutput(x + scale * r, iterations=iterations)
