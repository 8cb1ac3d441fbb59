"""The adversary critic's target confidence C: a running mean, per predicted class, of the
classifier's confidence on clean data.

As in the authors' code: each batch's mean of the max softmax probability, grouped by the
predicted class, is folded into the running value with decay 0.5; classes the batch does
not predict keep their value; values start at 1. Under multi-process training the per-class
sums and counts are all-reduced first, so every process holds the same C.
"""

from __future__ import annotations

import torch

from model.defenses.base import AllReduce, _single_process


class RunningClassConfidence:
    def __init__(
        self,
        num_classes: int,
        *,
        decay: float = 0.5,
        device: torch.device | str = "cpu",
        all_reduce: AllReduce = _single_process,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"confidence decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.values = torch.ones(num_classes, device=device)
        self._all_reduce = all_reduce

    @torch.no_grad()
    def update(self, logits: torch.Tensor) -> None:
        """Folds in one batch of clean logits."""
        probabilities = logits.detach().softmax(1)
        confidence, predicted = probabilities.max(1)
        stats = torch.zeros(2, len(self.values), device=self.values.device)
        stats[0].index_add_(0, predicted, confidence.to(stats.dtype))
        stats[1].index_add_(0, predicted, torch.ones_like(confidence, dtype=stats.dtype))
        stats = self._all_reduce(stats)
        seen = stats[1] > 0
        batch_mean = torch.where(seen, stats[0] / stats[1].clamp_min(1), self.values)
        self.values.mul_(self.decay).add_((1 - self.decay) * batch_mean)

    def __getitem__(self, classes: torch.Tensor) -> torch.Tensor:
        """C for each entry of `classes` (no gradient)."""
        return self.values[classes]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.values.copy_(state["values"].to(self.values.device))
