"""L2 margin maximization (Matyasko & Chau 2017): a multiclass hinge loss plus a penalty on
the input-gradient of the margin towards the most sensitive other class."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.attacks.gradients import difference_gradients, other_classes
from model.defenses.base import Metrics, SingleObjectiveDefense
from model.defenses.reference import Reference


@dataclass(frozen=True)
class MarginParams:
    """Paper: lambda 0.1; authors' code: hinge margin delta 1."""

    lam: float = 0.1
    delta: float = 1.0

    def validate(self) -> None:
        if self.lam < 0 or self.delta <= 0:
            raise ValueError(f"invalid margin-maximization parameters: {self}")


def multiclass_hinge(logits: torch.Tensor, y: torch.Tensor, delta: float) -> torch.Tensor:
    """mean max(0, delta + max_{k != y} f_k - f_y) (Lasagne's multiclass_hinge_loss)."""
    correct = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return (delta + others - correct).clamp_min(0).mean()


def most_sensitive_class(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor
) -> torch.Tensor:
    """argmax_{k != y} ||grad f_k - grad f_y||^2 per sample; no gradient through the choice."""
    others = other_classes(logits, y)
    _, _, grads = difference_gradients(net, x, y, others)
    return others.gather(1, grads.flatten(2).square().sum(2).argmax(1, keepdim=True)).squeeze(1)


class MarginMaximization(SingleObjectiveDefense):
    """hinge + lam * ||grad f_y - grad f_l||^2 with l = argmax_k ||grad f_k - grad f_y||^2.

    The choice of l is not differentiated (as in the authors' code); the penalty is, to
    second order, through the classifier's weights.

    References: Matyasko & Chau, "Margin maximization for robust classification using deep
    learning", IJCNN 2017.
    """

    name = "mm"
    Params = MarginParams
    default_optimizer = Reference.default_optimizer

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        x = x.detach().requires_grad_(True)
        logits = self.model(x)
        hinge = multiclass_hinge(logits, y, self.params.delta)
        sensitive = most_sensitive_class(self.net, x, y, logits)
        rows = torch.arange(len(y), device=y.device)
        margin = logits[rows, y] - logits[rows, sensitive]
        (grad,) = torch.autograd.grad(margin.sum(), x, create_graph=True)
        sensitivity = grad.flatten(1).square().sum(1).mean()
        error = (logits.argmax(1) != y).float().mean()
        loss = hinge + self.params.lam * sensitivity
        return loss, {"hinge": hinge, "sensitivity": sensitivity, "error": error}
