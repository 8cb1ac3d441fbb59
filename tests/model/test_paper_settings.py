"""The paper's evaluation settings on a properly trained FC (slow: minutes on a CPU)."""

from __future__ import annotations

import pytest
import torch

from model.attacks import HighConfidenceAttack, L2DeepFoolAttack
from model.metrics import evaluate
from model.networks import FullyConnected
from tests.fixtures.model import train_quickly


@pytest.mark.slow
def test_paper_attacks_on_a_trained_fc(mnist5k_train_set, mnist5k_test_set) -> None:
    torch.manual_seed(0)
    images, labels = mnist5k_train_set.tensors
    model = train_quickly(FullyConnected(), images, labels, epochs=8)
    test_images, test_labels = (tensor[:300] for tensor in mnist5k_test_set.tensors)
    evaluation = evaluate(
        model,
        test_images,
        test_labels,
        {"deepfool": L2DeepFoolAttack(), "hc": HighConfidenceAttack()},
    )
    assert evaluation.test_error < 0.1
    deepfool, hc = evaluation.results["deepfool"], evaluation.results["hc"]
    assert deepfool.num_failures == 0 and hc.num_failures <= 3
    # high confidence costs more than reaching the boundary (Table 1: 0.173 vs 0.131)
    assert hc.rho > 1.3 * deepfool.rho
    assert 0.05 < deepfool.rho < 0.3
