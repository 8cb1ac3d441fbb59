"""Per-epoch training metrics: averaged over steps (and processes), written as JSON lines.

`metrics.jsonl` in the run folder holds one object per finished epoch. The checkpoint keeps
the same history and is the source of truth: on resume the log is rewritten from it, so a
crash between saving the checkpoint and appending the line cannot leave them disagreeing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

AllReduce = Callable[[torch.Tensor], torch.Tensor]


class EpochMeter:
    """Running sums of a step's scalar metrics; `means()` averages them over all processes."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            value = value.detach().float()
            self._sums[name] = self._sums.get(name, torch.zeros_like(value)) + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def means(self, all_reduce: AllReduce = lambda tensor: tensor) -> dict[str, float]:
        if not self._sums:
            return {}
        names = sorted(self._sums)
        sums = torch.stack([self._sums[name] for name in names])
        counts = torch.tensor(
            [self._counts[name] for name in names], dtype=sums.dtype, device=sums.device
        )
        totals = all_reduce(torch.stack([sums, counts]))
        pairs = zip(names, totals[0], totals[1], strict=True)
        return {name: float(s / c) for name, s, c in pairs if c > 0}


class MetricsLog:
    """Appends one JSON object per epoch to a file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def rewrite(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Replaces the file's content with `history` (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(dict(row), sort_keys=True) + "\n" for row in history))
        os.replace(tmp, self.path)

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(dict(row), sort_keys=True) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def format_epoch(row: Mapping[str, Any]) -> str:
    """One human-readable line for the terminal."""
    shown = [f"epoch {row['epoch']}/{row['total_epochs']}"]
    if row.get("phase") == "pretrain":
        shown.append("(pretraining)")
    keys = [
        "loss",
        "nll",
        "error",
        "test_error",
        "fool",
        "cycle",
        "attack_success",
        "critic_loss",
        "critic_train_acc",
        "critic_heldout_acc",
    ]
    for key in keys:
        if key in row and row[key] is not None:
            shown.append(f"{key} {row[key]:.4f}")
    shown.append(f"{row['seconds']:.1f}s")
    return "  ".join(shown)
