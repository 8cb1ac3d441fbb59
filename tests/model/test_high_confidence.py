"""The high-confidence attack A_f: the evaluation form reaches confidence C on the target,
and the training form's gradients reach the classifier's weights, second order included,
matching finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from model.attacks import (
    HighConfidenceAttack,
    closest_boundary_targets,
    high_confidence_attack_unrolled,
    straight_through_stop,
)


def target_probability(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """p_target in float64 from float64 logits: an independent check of the attack's criterion."""
    with torch.no_grad():
        logits = model(images).double()
    return F.softmax(logits, dim=1).gather(1, targets.view(-1, 1)).squeeze(1)


def test_reaches_a_given_confidence_on_the_closest_boundary_target(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    result = HighConfidenceAttack()(small_fc, images, labels, confidence=0.9)
    assert torch.equal(result.targets, closest_boundary_targets(small_fc, images, labels))
    assert bool((result.targets != labels).all())
    assert bool(result.success.all())
    with torch.no_grad():
        assert torch.equal(small_fc(result.clipped).argmax(dim=1), result.targets)
    assert bool((target_probability(small_fc, result.clipped, result.targets) >= 0.9).all())
    assert float(result.clipped.min()) >= 0 and float(result.clipped.max()) <= 1


def test_default_confidence_is_the_models_own(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    result = HighConfidenceAttack()(small_fc, images, labels)
    with torch.no_grad():
        own = F.softmax(small_fc(images).double(), dim=1).amax(dim=1)
    torch.testing.assert_close(result.confidence, own.clamp(max=1 - 2**-24), rtol=0, atol=1e-6)
    assert float(result.success.float().mean()) >= 0.95
    reached = target_probability(small_fc, result.clipped, result.targets)
    assert bool((reached[result.success] >= result.confidence[result.success] - 1e-7).all())
    # unfinished samples used the whole budget; finished ones stopped early
    assert bool((result.iterations[~result.success] == 500).all())
    assert int(result.iterations.max()) <= 500


def test_reaches_chosen_targets(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    targets = (labels + 3) % 10
    result = HighConfidenceAttack()(small_fc, images, labels, targets=targets, confidence=0.8)
    assert torch.equal(result.targets, targets)
    assert float(result.success.float().mean()) >= 0.95
    assert bool(
        (target_probability(small_fc, result.clipped, targets)[result.success] >= 0.8).all()
    )


def smooth_net() -> nn.Module:
    """A tiny float64 network with smooth activations, so finite differences are exact to O(h²)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.Tanh(), nn.Linear(12, 10)).double()


def directional_derivatives(
    model: nn.Module, loss_of_model, directions: list[torch.Tensor], h: float = 1e-6
):
    """Central differences of loss_of_model() along parameter-space directions."""
    theta = parameters_to_vector(model.parameters()).detach().clone()
    values = []
    for direction in directions:
        with torch.no_grad():
            vector_to_parameters(theta + h * direction, model.parameters())
            plus = float(loss_of_model())
            vector_to_parameters(theta - h * direction, model.parameters())
            minus = float(loss_of_model())
        values.append((plus - minus) / (2 * h))
    with torch.no_grad():
        vector_to_parameters(theta, model.parameters())
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    ("steps", "stop_gradient_points"),
    [(1, True), (5, False)],
    ids=["one-step-authors-detach", "five-steps-exact"],
)
def test_training_form_gradients_match_finite_differences(
    mnist5k_test_set, steps: int, stop_gradient_points: bool
) -> None:
    model = smooth_net()
    images = mnist5k_test_set.tensors[0][:4].double()
    targets = closest_boundary_targets(model, images)
    confidence = torch.tensor([0.9, 0.8, 0.95, 0.7], dtype=torch.float64)
    readout = torch.randn(
        images.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )

    def loss_of_model() -> torch.Tensor:
        adversarial = high_confidence_attack_unrolled(
            model,
            images,
            targets,
            confidence,
            steps=steps,
            clip=False,
            stop_indicator=torch.sigmoid,
            stop_gradient_points=stop_gradient_points,
        )
        return (adversarial * readout).sum()

    model.zero_grad()
    loss_of_model().backward()
    gradient = parameters_to_vector([p.grad for p in model.parameters()])
    generator = torch.Generator().manual_seed(2)
    directions = [
        torch.randn(gradient.shape, generator=generator, dtype=torch.float64) for _ in range(3)
    ]
    expected = directional_derivatives(model, loss_of_model, directions)
    analytic = torch.stack([gradient @ direction for direction in directions])
    assert float(analytic.abs().min()) > 1e-3, "the check needs non-trivial derivatives"
    torch.testing.assert_close(analytic, expected, rtol=1e-5, atol=1e-8)


def test_training_form_is_second_order_through_the_classifier(small_fc, correct_batch) -> None:
    images = correct_batch[0][:16]
    targets = closest_boundary_targets(small_fc, images)

    def weight_gradients(create_graph: bool) -> list[torch.Tensor]:
        small_fc.zero_grad(set_to_none=True)
        adversarial = high_confidence_attack_unrolled(
            small_fc, images, targets, 0.95, create_graph=create_graph
        )
        F.cross_entropy(small_fc(adversarial), targets).backward()
        gradients = [p.grad.clone() for p in small_fc.parameters()]
        small_fc.zero_grad(set_to_none=True)
        return gradients

    second_order = weight_gradients(create_graph=True)
    first_order = weight_gradients(create_graph=False)
    assert all(bool(torch.isfinite(g).all()) for g in second_order)
    difference = sum(float((a - b).norm()) for a, b in zip(second_order, first_order, strict=True))
    assert difference > 1e-3 * sum(float(g.norm()) for g in first_order)


def test_straight_through_stop_rounds_forward_and_passes_the_sigmoid_gradient() -> None:
    margin = torch.tensor([-0.7, -0.1, 0.2, 0.9], requires_grad=True)
    indicator = straight_through_stop(margin)
    assert indicator.tolist() == [0.0, 0.0, 1.0, 1.0]
    indicator.sum().backward()
    sigmoid = torch.sigmoid(margin.detach())
    torch.testing.assert_close(margin.grad, sigmoid * (1 - sigmoid))


def test_stopped_samples_stay_stopped(small_fc, correct_batch) -> None:
    images = correct_batch[0][:8]
    targets = closest_boundary_targets(small_fc, images)
    calls = []

    def stop_once_then_go(margin: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        return torch.zeros_like(margin) if len(calls) == 1 else torch.ones_like(margin)

    adversarial = high_confidence_attack_unrolled(
        small_fc, images, targets, 0.99, stop_indicator=stop_once_then_go
    )
    assert len(calls) == 5
    assert torch.equal(adversarial, images)


def test_reached_confidence_means_no_step(small_fc, correct_batch) -> None:
    images = correct_batch[0][:8]
    labels = correct_batch[1][:8]
    # C below the current p of the label itself: round(sigmoid(C - p)) = 0 at the first step
    assert torch.equal(high_confidence_attack_unrolled(small_fc, images, labels, 1e-6), images)


def test_five_steps_raise_the_target_probability(small_fc, correct_batch) -> None:
    images = correct_batch[0]
    targets = closest_boundary_targets(small_fc, images)
    adversarial = high_confidence_attack_unrolled(small_fc, images, targets, 0.99).detach()
    before = target_probability(small_fc, images, targets)
    after = target_probability(small_fc, adversarial, targets)
    assert float((after > before).float().mean()) >= 0.95
    assert float((after > 0.5).float().mean()) >= 0.5
