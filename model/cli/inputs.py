"""What a command attacks: the classifier, the data and the attack's budget, defined once.

`attack`, `evaluate`, `stimuli` and `figures` take the same `--checkpoint`, `--dataset`,
`--data-root`, `--download` and `--split`; the three commands that run the iterative attacks
take the same `--max-iterations` and `--step-clip`. Each flag is declared and validated here,
so all of them accept and reject the same values with the same messages (exit status 2).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract.cli import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.checkpoint import Checkpoint
    from model.datasets import DatasetInfo

SPLITS = ("train", "test")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, *, purpose: str) -> None:
    """The classifier and the split; `purpose` says what the split is for in the help text."""
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="trained classifier (advcritic train)"
    )
    parser.add_argument(
        "--dataset", help="dataset (default: the one the checkpoint was trained on)"
    )
    parser.add_argument(
        "--data-root", type=Path, help="folder with the dataset's IDX files, if it needs one"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download MNIST into --data-root first (MD5-checked)",
    )
    parser.add_argument("--split", default="test", help=f"{purpose}: train or test (default test)")


def add_attack_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """The iterative attacks' budget (DeepFool and the high-confidence attack)."""
    parser.add_argument(
        "--max-iterations", type=int, default=500, help="iteration budget (default 500)"
    )
    parser.add_argument(
        "--step-clip",
        type=float,
        default=0.1,
        help="largest L2 step per iteration (default 0.1)",
    )


def check_attack_budget(args: argparse.Namespace) -> None:
    if args.max_iterations < 1:
        raise UsageError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    if not (args.step_clip > 0 and math.isfinite(args.step_clip)):
        raise UsageError(f"--step-clip must be a positive number, got {args.step_clip}")


def check_positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}")


def load_checkpoint_model(path: Path, device: torch.device) -> tuple[nn.Module, Checkpoint]:
    """The classifier in eval mode on `device` and its checkpoint record; UsageError if bad."""
    from model.checkpoint import CheckpointError, load_classifier

    try:
        return load_classifier(path, device=device)
    except CheckpointError as error:
        raise UsageError(str(error)) from error


@dataclass(frozen=True)
class Split:
    """A dataset split a command works on, checked against the classifier."""

    info: DatasetInfo
    name: str
    images: torch.Tensor
    labels: torch.Tensor


def load_split(args: argparse.Namespace, checkpoint: Checkpoint, split: str | None = None) -> Split:
    """`--split` (or `split`) of `--dataset` (default: the checkpoint's); UsageError when it
    cannot be loaded or its classes do not match the classifier's outputs."""
    from model.datasets import DatasetError, dataset_info, load_dataset

    split = split or args.split
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: use train or test")
    try:
        info = dataset_info(args.dataset or checkpoint.dataset)
        images, labels = load_dataset(
            info.name, split, args.data_root, download=args.download
        ).tensors
    except DatasetError as error:
        raise UsageError(str(error)) from error
    if info.num_classes != checkpoint.num_classes:
        raise UsageError(
            f"dataset {info.name!r} has {info.num_classes} classes but the checkpoint's "
            f"classifier has {checkpoint.num_classes} outputs"
        )
    return Split(info, split, images, labels.long())
