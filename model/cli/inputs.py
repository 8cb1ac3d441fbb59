"""The classifier and the data a command works on: `--checkpoint`, `--dataset`, `--data-root`,
`--split`, shared by `attack`, `evaluate`, `stimuli` and `figures`, so all four accept the
same inputs and reject bad ones with the same messages (exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from contract.cli import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.checkpoint import Checkpoint

SPLITS = ("train", "test")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, *, purpose: str) -> None:
    """The four input arguments; `purpose` says what the split is for in the help text."""
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="trained classifier (advcritic train)"
    )
    parser.add_argument(
        "--dataset", help="dataset (default: the one the checkpoint was trained on)"
    )
    parser.add_argument(
        "--data-root", type=Path, help="folder with the dataset's IDX files, if it needs one"
    )
    parser.add_argument("--split", default="test", help=f"{purpose}: train or test (default test)")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: use train or test")


def load_checkpoint_model(path: Path, device: torch.device) -> tuple[nn.Module, Checkpoint]:
    """The classifier in eval mode on `device` and its checkpoint record; UsageError if bad."""
    from model.checkpoint import CheckpointError, load_classifier

    try:
        return load_classifier(path, device=device)
    except CheckpointError as error:
        raise UsageError(str(error)) from error
