"""The contract every attack keeps (Foolbox-style table of cases), plus exact FGSM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.attacks import (
    FGSM,
    AuthorsHighConfidenceAttack,
    HighConfidenceAttack,
    L2CarliniWagnerAttack,
    L2DeepFoolAttack,
    build_attack,
    high_confidence_attack_unrolled,
    run_attack,
)
from model.attacks.gradients import closest_boundary_targets

ATTACK_CASES = [
    pytest.param(FGSM(epsilon=0.3), 0.5, id="fgsm"),
    pytest.param(L2DeepFoolAttack(), 1.0, id="deepfool"),
    pytest.param(L2DeepFoolAttack(max_step=None, candidates=3), 1.0, id="deepfool-noclip-top3"),
    pytest.param(
        L2CarliniWagnerAttack(steps=100, binary_search_steps=5, initial_const=1.0, stepsize=0.05),
        1.0,
        id="cw",
    ),
    pytest.param(HighConfidenceAttack(), 1.0, id="hc"),
    pytest.param(AuthorsHighConfidenceAttack(), 1.0, id="hc-authors"),
]


@pytest.mark.parametrize(("attack", "min_success"), ATTACK_CASES)
def test_attack_contract(small_fc, correct_batch, attack, min_success: float) -> None:
    images, labels = correct_batch
    before = {name: value.clone() for name, value in small_fc.state_dict().items()}
    result = attack(small_fc, images, labels)
    raw, clipped, success = result
    assert raw.shape == clipped.shape == images.shape and success.shape == labels.shape
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert float(success.float().mean()) >= min_success
    with torch.no_grad():
        predictions = small_fc(clipped).argmax(dim=1)
    # success is a fact about the returned images, checked here independently
    assert bool((predictions[success] != labels[success]).all())
    assert float((predictions == labels).float().mean()) < 1.0 - min_success + 0.5
    assert all(p.grad is None for p in small_fc.parameters()), "attacks must not leave gradients"
    assert not small_fc.training
    assert all(torch.equal(before[name], value) for name, value in small_fc.state_dict().items())


def test_training_form_stays_in_bounds(small_fc, correct_batch) -> None:
    images, _ = correct_batch
    targets = closest_boundary_targets(small_fc, images)
    adversarial = high_confidence_attack_unrolled(small_fc, images, targets, 0.99).detach()
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0


def test_fgsm_is_one_signed_gradient_step(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    x = images.clone().requires_grad_(True)
    F.cross_entropy(small_fc(x), labels, reduction="sum").backward()
    expected = (images + 0.1 * x.grad.sign()).clamp(0, 1)
    assert torch.equal(FGSM(epsilon=0.1)(small_fc, images, labels).clipped, expected)


def test_labels_default_to_predictions(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    with_labels = L2DeepFoolAttack()(small_fc, images, labels)
    without = L2DeepFoolAttack()(small_fc, images)
    assert torch.equal(with_labels.clipped, without.clipped)


def test_batched_run_matches_one_call(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    attack = HighConfidenceAttack(steps=50)
    confidence = torch.full((len(images),), 0.9)
    whole = attack(small_fc, images, labels, confidence=confidence)
    batched = run_attack(attack, small_fc, images, labels, batch_size=7, confidence=confidence)
    assert torch.equal(whole.success, batched.success)
    assert torch.equal(whole.targets, batched.targets)
    assert torch.allclose(whole.clipped, batched.clipped, atol=1e-4)


def test_float64_models_and_inputs_work(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    model64 = type(small_fc)(hidden=(64, 64)).double().eval()
    model64.load_state_dict({k: v.double() for k, v in small_fc.state_dict().items()})
    result = L2DeepFoolAttack()(model64, images.double(), labels)
    assert result.clipped.dtype == torch.float64 and bool(result.success.all())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x, y: FGSM()(m, x * 2, y), r"inputs must lie in \[0.0, 1.0\]"),
        (lambda m, x, y: FGSM()(m, x, y[:-1]), "labels must have shape"),
        (lambda m, x, y: FGSM()(m, x[:0], y[:0]), "non-empty batch"),
        (
            lambda m, x, y: HighConfidenceAttack()(m, x, y, confidence=1.5),
            r"confidence must be in \(0, 1\]",
        ),
        (lambda m, x, y: HighConfidenceAttack()(m, x, y, targets=y[:3]), "targets must have shape"),
        (lambda m, x, y: L2DeepFoolAttack(steps=0), "steps >= 1"),
        (lambda m, x, y: FGSM(epsilon=-1), "epsilon must be >= 0"),
        (
            lambda m, x, y: build_attack("pgd"),
            "unknown attack 'pgd'; choose one of: deepfool, cw, hc, hc-authors, fgsm",
        ),
    ],
)
def test_bad_input_is_rejected(small_fc, correct_batch, call, message: str) -> None:
    images, labels = correct_batch
    with pytest.raises(ValueError, match=message):
        call(small_fc, images, labels)
