"""The contract every attack keeps, enforced in one place (Foolbox 3's design).

A subclass implements `run`, which returns perturbed inputs and optional per-sample
bookkeeping. `Attack.__call__` is fixed: it validates the inputs, fills in labels, runs
the attack under `torch.enable_grad` (callers often sit in `no_grad` blocks), clips to the
input bounds and re-classifies the clipped images to decide success. Success is therefore
always a fact about the returned images, never a claim by the attack's own loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, final

import torch
from torch import nn

Bounds = tuple[float, float]


@dataclass(frozen=True)
class RunOutput:
    """What an attack's `run` hands back: unclipped images plus optional per-sample records."""

    adversarial: torch.Tensor
    iterations: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    confidence: torch.Tensor | None = None


@dataclass(frozen=True)
class AttackResult:
    """The outcome of an attack on a batch.

    Attributes:
        raw: the perturbed inputs as the attack produced them.
        clipped: `raw` clipped to the input bounds; use these.
        success: bool (N,): `clipped` meets the attack's criterion (misclassified, or, for
            targeted attacks, classified as the target with the required confidence).
        iterations: int64 (N,) update steps each sample took, where the attack counts them.
        targets: int64 (N,) target classes of targeted attacks.
        confidence: float (N,) target confidence of the high-confidence attack.

    Unpacks like Foolbox's triple: ``raw, clipped, success = attack(model, x, y)``.
    """

    raw: torch.Tensor
    clipped: torch.Tensor
    success: torch.Tensor
    iterations: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    confidence: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.raw, self.clipped, self.success))

    def __len__(self) -> int:
        return 3


class Attack(ABC):
    """Base class: subclasses implement `run`; `__call__` enforces bounds and success."""

    bounds: Bounds = (0.0, 1.0)

    @abstractmethod
    def run(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, **kwargs: Any
    ) -> RunOutput:
        """Perturb `inputs` (already validated, detached) away from `labels`."""

    def is_adversarial(
        self, logits: torch.Tensor, labels: torch.Tensor, output: RunOutput
    ) -> torch.Tensor:
        """Untargeted criterion: the prediction differs from the label."""
        return logits.argmax(dim=1) != labels

    @final
    def __call__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> AttackResult:
        """Attack `inputs` (N, ...) in `bounds`; `labels` default to the model's predictions."""
        x = inputs.detach()
        check_inputs(x, self.bounds)
        if labels is None:
            labels = predict(model, x)
        labels = labels.to(x.device, torch.long)
        if labels.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},), got {tuple(labels.shape)}")
        with torch.enable_grad():
            output = self.run(model, x, labels, **kwargs)
        raw = output.adversarial.detach()
        clipped = raw.clamp(*self.bounds)
        with torch.no_grad():
            success = self.is_adversarial(model(clipped), labels, output)
        return AttackResult(
            raw, clipped, success, output.iterations, output.targets, output.confidence
        )


def check_inputs(x: torch.Tensor, bounds: Bounds) -> None:
    """ValueError for inputs an attack cannot work on (wrong rank, outside the bounds, NaN)."""
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch of inputs, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"expected floating-point inputs, got {x.dtype}")
    low, high = bounds
    if torch.isnan(x).any() or x.min() < low or x.max() > high:
        raise ValueError(
            f"inputs must lie in [{low}, {high}] (found [{x.min():.4g}, {x.max():.4g}])"
        )


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's predicted classes, without building a graph."""
    with torch.no_grad():
        return model(x).argmax(dim=1)


def batch_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values (N,) to broadcast against a batch shaped like `like`."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def l2_norms(values: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms of a batch (N, ...) -> (N,)."""
    return values.flatten(1).norm(dim=1)


def clip_by_norm(values: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each sample down to L2 norm at most `max_norm` (tf.clip_by_norm per sample)."""
    norms = l2_norms(values)
    scale = torch.where(norms > max_norm, max_norm / norms.clamp_min(1e-12), torch.ones_like(norms))
    return values * batch_view(scale, values)


def project_perturbation(
    x: torch.Tensor, r: torch.Tensor, overshoot: float, bounds: Bounds
) -> torch.Tensor:
    """The perturbation r such that x + (1 + overshoot) r lies in bounds (the authors' projection)."""
    scale = 1.0 + overshoot
    return ((x + scale * r).clamp(*bounds) - x) / scale
