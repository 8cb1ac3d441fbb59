"""Batched input gradients of logit differences, and the closest decision boundary.

DeepFool and the high-confidence attack's target choice both need, for every sample and
every candidate class k, f_k - f_label and its input gradient. One forward pass feeds one
backward pass per candidate column (the graph is kept between them), which costs about
half of Foolbox's forward+backward per candidate and works for any module, including
layers that `vmap` cannot batch.
"""

from __future__ import annotations

import torch
from torch import nn


def difference_gradients(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (N, C), f = logit[others] - logit[label] (N, M) and df/dx (N, M, *x.shape[1:]).

    `others` (N, M) lists, per sample, the classes to compare with its label.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        label_onehot = torch.zeros_like(logits).scatter_(1, labels.view(-1, 1), 1.0)
        columns = others.shape[1]
        grads = []
        for column in range(columns):
            direction = torch.zeros_like(logits).scatter_(1, others[:, column : column + 1], 1.0)
            (grad,) = torch.autograd.grad(
                logits, x, grad_outputs=direction - label_onehot, retain_graph=column < columns - 1
            )
            grads.append(grad)
    logits = logits.detach()
    differences = logits.gather(1, others) - logits.gather(1, labels.view(-1, 1))
    return logits, differences, torch.stack(grads, dim=1)


def other_classes(
    logits: torch.Tensor, labels: torch.Tensor, limit: int | None = None
) -> torch.Tensor:
    """Per sample, the classes other than its label, most likely first (N, C-1), at most `limit`."""
    masked = logits.detach().scatter(1, labels.view(-1, 1), float("-inf"))
    order = masked.argsort(dim=1, descending=True)[:, : logits.shape[1] - 1]
    return order if limit is None else order[:, :limit]


def linearized_distances(
    differences: torch.Tensor, grads: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool's distance |f_k| / ||w_k|| to each linearised boundary, and ||w_k|| (both (N, M))."""
    norms = grads.flatten(2).norm(dim=2)
    return differences.abs() / norms.clamp_min(1e-12), norms


@torch.no_grad()
def closest_boundary_targets(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """The class of the closest linearised decision boundary (DeepFool's choice), int64 (N,).

    argmin over k != label of |f_k - f_label| / ||grad f_k - grad f_label||, measured from
    `labels` (default: the model's predictions). No gradient flows through the choice.
    """
    logits = model(x)
    if labels is None:
        labels = logits.argmax(dim=1)
    candidates = other_classes(logits, labels)
    _, differences, grads = difference_gradients(model, x, labels, candidates)
    distances, _ = linearized_distances(differences, grads)
    return candidates.gather(1, distances.argmin(dim=1, keepdim=True)).squeeze(1)
