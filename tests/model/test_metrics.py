"""rho and test error follow the documented policy: misclassified inputs count 0 and are
never attacked, failures are excluded from rho and counted, nothing is dropped silently."""

from __future__ import annotations

import math

import pytest
import torch

from model import metrics
from model.attacks import FGSM, L2DeepFoolAttack
from model.metrics import evaluate, robustness


class RecordingDeepFool(L2DeepFoolAttack):
    """DeepFool that remembers which inputs it was asked to attack."""

    def __init__(self) -> None:
        super().__init__(max_step=None)
        self.seen: list[torch.Tensor] = []

    def run(self, model, inputs, labels):
        self.seen.append(inputs.clone())
        return super().run(model, inputs, labels)


@pytest.fixture(scope="module")
def sample(small_fc, mnist5k_test_set):
    images, labels = mnist5k_test_set.tensors
    images, labels = images[:80], labels[:80]
    with torch.no_grad():
        wrong = small_fc(images).argmax(dim=1) != labels
    assert 0 < int(wrong.sum()) < 20, "the policy test needs some misclassified inputs"
    return images, labels, wrong


def test_test_error(small_fc, sample) -> None:
    images, labels, wrong = sample
    assert metrics.test_error(small_fc, images, labels, batch_size=7) == pytest.approx(
        float(wrong.float().mean())
    )


def test_misclassified_inputs_count_zero_and_are_not_attacked(small_fc, sample) -> None:
    images, labels, wrong = sample
    attack = RecordingDeepFool()
    result = robustness(small_fc, attack, images, labels, batch_size=25)
    attacked = torch.cat(attack.seen)
    assert len(attacked) == int((~wrong).sum())
    assert torch.equal(attacked, images[~wrong])
    assert result.num_misclassified == int(wrong.sum())
    assert bool((result.ratios[wrong] == 0).all())
    assert bool(result.success[wrong].all())
    assert torch.equal(result.adversarial[wrong], images[wrong])
    assert result.num_failures == 0
    expected = (result.adversarial - images).flatten(1).norm(dim=1) / images.flatten(1).norm(dim=1)
    torch.testing.assert_close(result.ratios[~wrong], expected[~wrong])
    assert result.rho == pytest.approx(float(result.ratios.mean()))
    assert result.iterations is not None and bool((result.iterations[wrong] == 0).all())


def test_failures_are_excluded_and_counted(small_fc, sample) -> None:
    images, labels, wrong = sample
    result = robustness(small_fc, FGSM(epsilon=0.05), images, labels)
    failed = ~result.success
    assert 0 < result.num_failures == int(failed.sum())
    assert not bool((failed & wrong).any())
    assert result.rho == pytest.approx(float(result.ratios[~failed].mean()))
    assert result.rho_with_failures == pytest.approx(float(result.ratios.mean()))
    summary = result.summary()
    assert summary["failures"] == result.num_failures
    assert summary["failure_rate"] == pytest.approx(result.num_failures / len(images))
    assert summary["samples"] == len(images) and summary["misclassified"] == int(wrong.sum())


def test_all_failures_give_nan_not_zero(small_fc, sample) -> None:
    images, labels, wrong = sample
    correct_only = ~wrong
    result = robustness(small_fc, FGSM(epsilon=0.0), images[correct_only], labels[correct_only])
    assert result.num_failures == int(correct_only.sum())
    assert math.isnan(result.rho)


def test_evaluate_reports_every_attack(small_fc, sample) -> None:
    images, labels, wrong = sample
    evaluation = evaluate(
        small_fc, images, labels, {"deepfool": L2DeepFoolAttack(max_step=None), "fgsm": FGSM()}
    )
    summary = evaluation.summary()
    assert summary["test_error"] == pytest.approx(float(wrong.float().mean()))
    assert set(summary["attacks"]) == {"deepfool", "fgsm"}
    alone = robustness(small_fc, L2DeepFoolAttack(max_step=None), images, labels)
    assert summary["attacks"]["deepfool"]["rho"] == pytest.approx(alone.rho, rel=1e-4)
    assert summary["attacks"]["deepfool"]["failures"] == 0
    assert summary["attacks"]["fgsm"]["failures"] == evaluation.results["fgsm"].num_failures > 0
