"""Virtual adversarial training (Miyato et al.): smooth the output distribution along its
most sensitive L2 direction, found by power iteration from a Gaussian start."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.defenses.base import Metrics, SingleObjectiveDefense
from model.defenses.reference import Reference, classification_metrics


@dataclass(frozen=True)
class VATParams:
    """Paper: eps 2.0; authors' code: xi 1e-6, one power iteration, weight 1.0."""

    eps: float = 2.0
    xi: float = 1e-6
    power_iterations: int = 1
    weight: float = 1.0

    def validate(self) -> None:
        if self.eps <= 0 or self.xi <= 0 or self.power_iterations < 1 or self.weight < 0:
            raise ValueError(f"invalid VAT parameters: {self}")


def _unit_l2(d: torch.Tensor) -> torch.Tensor:
    # Divide by the max first so that tiny (xi-scaled) vectors do not underflow when squared.
    flat = d.flatten(1)
    flat = flat / (flat.abs().amax(1, keepdim=True) + 1e-12)
    flat = flat / (flat.norm(dim=1, keepdim=True) + 1e-12)
    return flat.view_as(d)


def kl_from_logits(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_reference || p) per sample."""
    log_q = F.log_softmax(reference_logits, dim=1)
    return (log_q.exp() * (log_q - F.log_softmax(logits, dim=1))).sum(1)


class VirtualAdversarialTraining(SingleObjectiveDefense):
    """NLL + weight * KL(p(x) || p(x + r_vadv)), the clean prediction held constant.

    References: Miyato et al., "Distributional Smoothing with Virtual Adversarial Training",
    ICLR 2016.
    """

    name = "vat"
    Params = VATParams
    default_optimizer = Reference.default_optimizer

    def virtual_adversarial_direction(
        self, x: torch.Tensor, clean_logits: torch.Tensor
    ) -> torch.Tensor:
        """Unit-norm dominant eigenvector of the KL's Hessian at x, by power iteration."""
        d = torch.randn_like(x)
        for _ in range(self.params.power_iterations):
            d = (self.params.xi * _unit_l2(d)).requires_grad_(True)
            divergence = kl_from_logits(clean_logits, self.net(x + d)).sum()
            (d,) = torch.autograd.grad(divergence, d)
        return _unit_l2(d.detach())

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        logits = self.model(x)
        nll, metrics = classification_metrics(logits, y)
        clean_logits = logits.detach()
        r_vadv = self.params.eps * self.virtual_adversarial_direction(x, clean_logits)
        vat = kl_from_logits(clean_logits, self.net(x + r_vadv)).mean()
        return nll + self.params.weight * vat, {**metrics, "vat": vat}
