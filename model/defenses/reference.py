"""The undefended reference: plain negative log-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.defenses.base import Metrics, OptimizerSettings, SingleObjectiveDefense


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """NLL of the batch and the terms every defense logs about its clean predictions."""
    nll = F.cross_entropy(logits, y)
    error = (logits.argmax(1) != y).float().mean()
    return nll, {"nll": nll, "error": error}


class Reference(SingleObjectiveDefense):
    """No defense: the baseline every robustness figure is compared against."""

    name = "reference"
    # Adam 1e-3, decayed 0.95 per epoch, as in the authors' baseline code (margin_maximization).
    default_optimizer = OptimizerSettings(lr=1e-3, decay_every=1, decay_factor=0.95)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        return classification_metrics(self.model(x), y)
