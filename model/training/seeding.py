"""Deterministic randomness that survives interruption.

Every epoch reseeds the global generator from (seed, epoch, rank) and draws its data order
from (seed, epoch). So no generator state has to be saved: a run resumed at epoch k
replays epoch k+1 exactly as an uninterrupted run would, on any number of processes.
"""

from __future__ import annotations

import random

import torch

_MASK = (1 << 63) - 1


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 over the parts)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (part & _MASK)) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        state ^= state >> 31
    return state & _MASK


def seed_everything(seed: int) -> None:
    """Seeds Python's and torch's generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)


def enable_determinism() -> None:
    """Ask torch for deterministic GPU kernels where they exist (warns where they do not).

    Process-wide: the training command calls it for GPU runs only."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def epoch_order(
    num_examples: int, seed: int, epoch: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The shuffled example order of `epoch`: the same in every process and every resume."""
    generator = torch.Generator().manual_seed(derived_seed(seed, epoch, 0xDA7A))
    return torch.randperm(num_examples, generator=generator).to(device)
