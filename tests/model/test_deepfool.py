"""DeepFool and the closest-boundary target are exact on a linear classifier, and C&W's
perturbations are no larger than DeepFool's on a trained network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.attacks import L2CarliniWagnerAttack, L2DeepFoolAttack, closest_boundary_targets
from tests.fixtures.model import single_thread


def linear_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double().eval()
    with torch.no_grad():
        model[1].weight.mul_(0.1)
    return model


def exact_boundary(
    model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed form for a linear classifier: the minimal L2 perturbation and its target class."""
    weight, bias = model[1].weight, model[1].bias
    logits = x.flatten(1) @ weight.T + bias
    label = logits.argmax(dim=1)
    gaps = logits - logits.gather(1, label.view(-1, 1))  # f_k - f_label <= 0
    directions = weight.unsqueeze(0) - weight[label].unsqueeze(1)  # (N, K, D)
    distances = gaps.abs() / directions.norm(dim=2)
    distances.scatter_(1, label.view(-1, 1), float("inf"))
    target = distances.argmin(dim=1)
    rows = torch.arange(len(x))
    unit = directions[rows, target] / directions[rows, target].norm(dim=1, keepdim=True)
    return distances[rows, target], unit, target


def test_deepfool_finds_the_exact_minimal_perturbation_in_one_step() -> None:
    model = linear_classifier()
    generator = torch.Generator().manual_seed(1)
    x = 0.4 + 0.2 * torch.rand(16, 1, 28, 28, generator=generator, dtype=torch.float64)
    distance, unit, target = exact_boundary(model, x)
    epsilon = 1e-4
    result = L2DeepFoolAttack(max_step=None, overshoot=0.0, epsilon=epsilon)(model, x)
    assert result.iterations.tolist() == [1] * len(x)
    assert bool(result.success.all())
    assert torch.equal(result.raw, result.clipped), "the box must not have bound"
    r = (result.raw - x).flatten(1)
    torch.testing.assert_close(r.norm(dim=1), distance + epsilon, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r / r.norm(dim=1, keepdim=True), unit, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(model(result.raw).argmax(dim=1), target)


def test_closest_boundary_target_is_the_exact_one() -> None:
    model = linear_classifier(seed=3)
    x = torch.rand(32, 1, 28, 28, dtype=torch.float64)
    _, _, target = exact_boundary(model, x)
    assert torch.equal(closest_boundary_targets(model, x), target)


def test_step_clip_limits_each_step() -> None:
    model = linear_classifier()
    x = 0.4 + 0.2 * torch.rand(8, 1, 28, 28, dtype=torch.float64)
    distance, _, _ = exact_boundary(model, x)
    result = L2DeepFoolAttack(max_step=0.01, overshoot=0.0)(model, x)
    steps = result.iterations.double()
    # a clipped straight line to the boundary: ceil(distance / 0.01) steps of at most 0.01001
    assert torch.equal(steps, torch.ceil(distance / 0.0100999))
    assert bool(((result.raw - x).flatten(1).norm(dim=1) <= steps * (0.01 + 1e-4) + 1e-12).all())


@pytest.fixture(scope="module")
def deepfool_and_cw(small_fc, correct_batch):
    images, labels = correct_batch[0][:20], correct_batch[1][:20]
    # fewer, larger Adam steps than the paper's 9 x 1,000 (the test must stay fast)
    cw = L2CarliniWagnerAttack(steps=300, binary_search_steps=5, initial_const=1.0, stepsize=0.05)
    with single_thread():  # module-scoped: runs before the per-test thread setting
        return images, L2DeepFoolAttack()(small_fc, images, labels), cw(small_fc, images, labels)


def test_cw_perturbations_are_no_larger_than_deepfools(deepfool_and_cw) -> None:
    images, deepfool, cw = deepfool_and_cw
    assert bool(deepfool.success.all()) and bool(cw.success.all())
    df_norms = (deepfool.clipped - images).flatten(1).norm(dim=1)
    cw_norms = (cw.clipped - images).flatten(1).norm(dim=1)
    assert float(cw_norms.mean()) <= float(df_norms.mean())
    assert float((cw_norms <= df_norms * 1.01).float().mean()) >= 0.9
