"""Fixtures for the stimuli tests: a tiny FC trained for real, and bundles made from it.

The classifier is the paper's FC trained for two short epochs on 2,000 mnist-5k digits by
the project's own training loop (a few seconds); bundles are written by the real
`advcritic stimuli` command with a small iteration budget, so every test reads files the
study server would import.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_classifier
from model.cli import main
from model.datasets import load_dataset

BUNDLE_ADVERSARIAL = 48
BUNDLE_CATCH = 12
# Small batches, so the bundle spans several batches and a partial last one (20+20+8).
BUNDLE_ARGS = [
    "--limit",
    str(BUNDLE_ADVERSARIAL),
    "--catch",
    str(BUNDLE_CATCH),
    "--batch-size",
    "20",
    "--max-iterations",
    "150",
    "--no-progress",
]


@pytest.fixture(scope="session")
def stimulus_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.training import build_config, train

    torch.manual_seed(0)
    config = build_config(
        defense="reference",
        network="fc",
        preset="cpu",
        seed=3,
        epochs=2,
        train_limit=2000,
        eval_every=0,
    )
    return train(config, tmp_path_factory.mktemp("run"), progress=False).checkpoint


@pytest.fixture(scope="session")
def stimulus_model(stimulus_checkpoint: Path) -> torch.nn.Module:
    return load_classifier(stimulus_checkpoint)[0]


@pytest.fixture(scope="session")
def mnist5k_test() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist-5k", "test").tensors


@pytest.fixture(scope="session")
def mnist5k_train() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist-5k", "train").tensors


@pytest.fixture(scope="session")
def stimulus_bundle(stimulus_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle written by `advcritic stimuli`; treat as read-only (copy it to modify)."""
    out = tmp_path_factory.mktemp("bundles") / "reference-fc"
    assert (
        main(["stimuli", "--checkpoint", str(stimulus_checkpoint), "--out", str(out), *BUNDLE_ARGS])
        == 0
    )
    return out


@pytest.fixture
def bundle_copy(stimulus_bundle: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the session bundle."""
    return Path(shutil.copytree(stimulus_bundle, tmp_path / "bundle"))
