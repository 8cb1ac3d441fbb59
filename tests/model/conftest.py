"""The model tests' set-up: one torch thread, and a batch of correctly classified digits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.fixtures.model import single_thread


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def correct_batch(small_fc, mnist5k_test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """40 mnist-5k test digits that `small_fc` classifies correctly."""
    images, labels = mnist5k_test_set.tensors
    with torch.no_grad():
        right = small_fc(images[:100]).argmax(dim=1) == labels[:100]
    return images[:100][right][:40], labels[:100][right][:40]
