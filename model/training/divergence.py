"""Stop a run the moment it diverges, before the bad step reaches the weights.

A step diverges when any logged term is NaN/inf or larger in magnitude than a threshold.
The check runs before backpropagation, so the classifier in memory is still the last good
one, and the last checkpoint on disk is never overwritten by a diverged state. Under
multi-process training the verdict is shared (all-reduced), so every process stops
together instead of some waiting forever for the others' gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# True on every process if true on any.
AnyProcess = Callable[[bool], bool]


class TrainingDiverged(RuntimeError):
    """The loss (or a term of it) became NaN, infinite or implausibly large."""


@dataclass
class DivergenceGuard:
    threshold: float = 1e4
    any_process: AnyProcess = bool
    epoch: int = 0
    step: int = 0

    def at(self, epoch: int, step: int) -> None:
        """Where the next checked step is (for the error message)."""
        self.epoch, self.step = epoch, step

    def __call__(self, metrics: dict[str, torch.Tensor]) -> None:
        # One device-to-host copy per step for all terms.
        numbers = torch.stack([value.float().reshape(()) for value in metrics.values()]).tolist()
        values = dict(zip(metrics, numbers, strict=True))
        bad = {
            name: value
            for name, value in values.items()
            if not math.isfinite(value) or abs(value) > self.threshold
        }
        if self.any_process(bool(bad)):
            shown = ", ".join(f"{name}={value:.4g}" for name, value in values.items())
            where = f"epoch {self.epoch}, step {self.step}"
            culprit = ", ".join(bad) if bad else "another process's loss"
            raise TrainingDiverged(
                f"training diverged at {where}: {culprit} is not finite or exceeds "
                f"{self.threshold:g} ({shown}); the weights were not updated with this step. "
                "Try a smaller learning rate (--lr) or check the data."
            )

    @staticmethod
    def check_weights(module: torch.nn.Module, epoch: int) -> None:
        """Raises if any weight is NaN/inf (cheap insurance at the end of an epoch)."""
        for name, parameter in module.named_parameters():
            if not torch.isfinite(parameter).all():
                raise TrainingDiverged(f"weight {name} is not finite after epoch {epoch}")
