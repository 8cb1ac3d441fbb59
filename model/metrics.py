"""Test error and the robustness metric rho of the paper (after DeepFool).

    rho(A) = mean over the test set of ||r||_2 / ||x||_2,  r = A(x) - x.

Policy, explicit because the number depends on it:

* Inputs the model already misclassifies are not attacked; they count with rho = 0
  (the authors' code does the same: their perturbation is zero).
* An attack *failure* (a correctly classified input for which the attack returned no
  adversarial example meeting its criterion) is excluded from the mean and counted in
  `failures`, never silently dropped. This is what the authors did for C&W; for DeepFool and
  their own attack they averaged the last iterate of failures in as well, which with 500
  iterations rarely matters. `rho_with_failures` reports that variant next to `rho`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.attacks import Attack
from model.progress import progress_bar


@dataclass(frozen=True)
class RobustnessResult:
    """Per-sample outcome of one attack over a dataset, and the summary numbers.

    Attributes:
        ratios: float (N,) ||r|| / ||x|| of the returned image; 0 for misclassified inputs
            (unless they were attacked too, `attack_misclassified`); for failures, the ratio
            of whatever the attack returned (C&W returns the input).
        misclassified: bool (N,) the clean input is already misclassified.
        success: bool (N,) the attack met its criterion (True for misclassified inputs that
            were not attacked).
        iterations: int64 (N,) update steps per sample where the attack counts them.
        adversarial: the returned images (N, ...), clipped to [0, 1].
    """

    attack: str
    ratios: torch.Tensor
    misclassified: torch.Tensor
    success: torch.Tensor
    iterations: torch.Tensor | None
    adversarial: torch.Tensor
    targets: torch.Tensor | None = None

    @property
    def failed(self) -> torch.Tensor:
        return ~self.success

    @property
    def num_samples(self) -> int:
        return len(self.ratios)

    @property
    def num_failures(self) -> int:
        return int(self.failed.sum())

    @property
    def num_misclassified(self) -> int:
        return int(self.misclassified.sum())

    @property
    def rho(self) -> float:
        """Mean ratio over all inputs except attack failures (nan if every attack failed)."""
        counted = self.ratios[self.success]
        return float(counted.mean()) if len(counted) else math.nan

    @property
    def rho_with_failures(self) -> float:
        """Mean ratio over all inputs, failures counted with their returned image."""
        return float(self.ratios.mean())

    def summary(self) -> dict[str, Any]:
        mean_iterations = None if self.iterations is None else float(self.iterations.float().mean())
        return {
            "attack": self.attack,
            "rho": self.rho,
            "rho_with_failures": self.rho_with_failures,
            "samples": self.num_samples,
            "misclassified": self.num_misclassified,
            "failures": self.num_failures,
            "failure_rate": self.num_failures / self.num_samples,
            "mean_iterations": mean_iterations,
        }


def _batches(n: int, batch_size: int) -> range:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return range(0, n, batch_size)


@torch.no_grad()
def predict_all(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Predicted classes (N,) on CPU, computed in batches on `device`."""
    parts = [
        model(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
        for i in _batches(len(images), batch_size)
    ]
    return torch.cat(parts)


def test_error(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """Fraction of inputs the model misclassifies."""
    return float(
        (predict_all(model, images, batch_size=batch_size, device=device) != labels.cpu())
        .float()
        .mean()
    )


def perturbation_ratios(adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """||adversarial - x|| / ||x|| per sample (a blank image counts with norm 1e-12)."""
    return (adversarial - images).flatten(1).norm(dim=1) / images.flatten(1).norm(dim=1).clamp_min(
        1e-12
    )


def robustness(
    model: nn.Module,
    attack: Attack,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    name: str = "attack",
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    attack_misclassified: bool = False,
) -> RobustnessResult:
    """Run `attack` on the correctly classified inputs and measure rho (see module docstring).

    `attack_misclassified` attacks every input from its true label and keeps the ratio of
    what the attack returned for inputs misclassified from the start, as the authors' test.py
    did for their own attack (the `hc-authors` column); by default those count 0.
    """
    images, labels = images.cpu(), labels.cpu()
    misclassified = predict_all(model, images, batch_size=batch_size, device=device) != labels
    correct = torch.nonzero(~misclassified | attack_misclassified).squeeze(1)
    adversarial = images.clone()
    success = torch.ones(len(images), dtype=torch.bool)
    iterations = torch.zeros(len(images), dtype=torch.long)
    targets: torch.Tensor | None = None
    has_iterations = True
    bar = progress_bar(len(correct), desc=name, enabled=show_progress)
    for start in _batches(len(correct), batch_size):
        rows = correct[start : start + batch_size]
        result = attack(model, images[rows].to(device), labels[rows].to(device))
        adversarial[rows] = result.clipped.cpu()
        success[rows] = result.success.cpu()
        if result.iterations is None:
            has_iterations = False
        else:
            iterations[rows] = result.iterations.cpu()
        if result.targets is not None:
            targets = labels.clone() if targets is None else targets
            targets[rows] = result.targets.cpu()
        bar.update(len(rows))
    bar.close()
    ratios = perturbation_ratios(adversarial, images)
    if not attack_misclassified:
        ratios[misclassified] = 0.0
    return RobustnessResult(
        name,
        ratios,
        misclassified,
        success,
        iterations if has_iterations else None,
        adversarial,
        targets,
    )


@dataclass(frozen=True)
class Evaluation:
    """Test error and one RobustnessResult per attack, for one model on one dataset split."""

    test_error: float
    num_samples: int
    results: dict[str, RobustnessResult]

    def summary(self) -> dict[str, Any]:
        return {
            "test_error": self.test_error,
            "samples": self.num_samples,
            "attacks": {name: result.summary() for name, result in self.results.items()},
        }


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: dict[str, Attack],
    *,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
) -> Evaluation:
    """Test error and rho under every attack in `attacks` (Table 1's columns)."""
    error = test_error(model, images, labels, batch_size=batch_size, device=device)
    results = {
        name: robustness(
            model,
            attack,
            images,
            labels,
            name=name,
            batch_size=batch_size,
            device=device,
            show_progress=show_progress,
        )
        for name, attack in attacks.items()
    }
    return Evaluation(error, len(images), results)
