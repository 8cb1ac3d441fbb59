"""The fast gradient sign method: one signed gradient step of size epsilon (L-infinity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.attacks.base import Attack, RunOutput


class FGSM(Attack):
    """x + epsilon * sign(grad_x CE(f(x), label)); the baseline adversarial training uses it.

    Args:
        epsilon: L-infinity size of the step (0.1 for the paper's adversarial training).

    References:
        Ian J. Goodfellow, Jonathon Shlens, Christian Szegedy, "Explaining and Harnessing
        Adversarial Examples", ICLR 2015, arXiv:1412.6572.
    """

    def __init__(self, *, epsilon: float = 0.1) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = epsilon

    def run(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> RunOutput:
        x = inputs.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        steps = torch.ones(len(x), dtype=torch.long, device=x.device)
        return RunOutput(inputs + self.epsilon * grad.sign(), iterations=steps)
