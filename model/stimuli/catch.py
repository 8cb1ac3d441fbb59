"""Catch trials: clean images with known labels, mixed into a study to measure annotators.

An annotator who labels clean digits wrongly is not reliable evidence about adversarial
ones. The selection is balanced over classes (round-robin over a seeded shuffle of each
class), so an annotator's accuracy on catch trials is not dominated by one easy class, and
it is reproducible from the seed alone.
"""

from __future__ import annotations

import torch


def select_catch_indices(labels: torch.Tensor, count: int, seed: int) -> list[int]:
    """`count` distinct indices into `labels`, balanced over classes, reproducible from `seed`.

    Classes take turns in ascending order; a class that runs out simply drops out.
    """
    if count < 0:
        raise ValueError(f"catch-trial count must be >= 0, got {count}")
    if count > labels.numel():
        raise ValueError(
            f"asked for {count} catch trials but the source split has only {labels.numel()} images"
        )
    generator = torch.Generator().manual_seed(seed)
    pools: list[list[int]] = []
    for value in torch.unique(labels).tolist():
        members = torch.nonzero(labels == value).flatten()
        pools.append(members[torch.randperm(members.numel(), generator=generator)].tolist())
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count:
        for pool in pools:
            if depth < len(pool) and len(chosen) < count:
                chosen.append(pool[depth])
        depth += 1
    return chosen
