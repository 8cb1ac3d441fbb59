"""Where and how a command runs: `--device` and `--threads`, for every `advcritic` command.

One definition, so `train`, `table1`, `attack`, `evaluate`, `stimuli` and `figures` accept
the same devices and reject bad ones with the same message (naming the flag and the value).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from contract.cli import UsageError

if TYPE_CHECKING:
    import torch


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--threads`; `apply_runtime` validates and applies them."""
    parser.add_argument(
        "--device", default="cpu", help="torch device: cpu, cuda or cuda:N (default cpu)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for PyTorch (default: PyTorch's, one per core; their waiting is "
        "tuned so that other processes on the machine do not stall them)",
    )


def parse_device(text: str) -> torch.device:
    """A torch device that exists here; UsageError naming `--device` and the value otherwise."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise UsageError(
            f"--device {text!r}: unknown device {text!r}: use cpu, cuda or cuda:N"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text!r}: requested but no CUDA GPU is available")
    return device


def apply_runtime(args: argparse.Namespace) -> torch.device:
    """Validate `--device`, apply `--threads` (process-wide), and return the device."""
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return parse_device(args.device)
