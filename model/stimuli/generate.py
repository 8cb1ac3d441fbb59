"""`advcritic stimuli` as a library: attack a whole split, quantise, re-check, write a bundle.

The attack runs over the whole split first (keeping `batch_size` images in flight), then
stimuli are stored, measured and handed to `write_bundle` batch by batch; the bundle only
appears under its final name once every stimulus is written (a crash leaves none).
Failed attacks are kept and marked (`success`/`reached_confidence` False), never dropped:
Table 2 is about all test images, and dropping the hard ones would flatter a defense.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contract.bundle import BundleMeta, StimulusRecord, write_bundle
from model.stimuli.attack import AttackSettings
from model.stimuli.catch import select_catch_indices
from model.stimuli.outcome import BatchOutcome, measure_batch
from model.stimuli.pool import attack_pool
from model.stimuli.records import outcome_records
from model.stimuli.store_and_measure import store_and_measure

# Images attacked together; on a CPU, matrix products reach full speed from ~1,000 rows.
DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class ImageSource:
    """Images (N, 1, 28, 28) in [0, 1] and labels of one dataset split, with their names."""

    dataset: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass(frozen=True)
class CatchPlan:
    """How many clean catch trials to add, from which split, chosen with which seed."""

    count: int
    seed: int
    source: ImageSource

    def describe(self) -> dict[str, Any]:
        return {"count": self.count, "seed": self.seed, "split": self.source.split}


@dataclass
class GenerationStats:
    """Running totals over the adversarial stimuli of one bundle."""

    adversarial: int = 0
    catch: int = 0
    success: int = 0
    reached_confidence: int = 0
    attack_reached: int = 0
    undone_by_quantization: int = 0
    misclassified_original: int = 0
    # Misclassified originals whose closest boundary is their true class: the attack then
    # moves them back to it, and "change" and "no change" mean the same label in Table 2.
    target_is_true_label: int = 0
    iterations: list[int] = field(default_factory=list)
    rho_of_successes: list[float] = field(default_factory=list)

    def add(self, outcome: BatchOutcome) -> None:
        if outcome.target is None:
            self.catch += len(outcome)
            return
        self.adversarial += len(outcome)
        self.success += int(outcome.success.sum())
        self.reached_confidence += int(outcome.reached_confidence.sum())
        self.misclassified_original += int(
            (outcome.prediction_original != outcome.original_label).sum()
        )
        self.target_is_true_label += int((outcome.target == outcome.original_label).sum())
        if outcome.attack_reached is not None:
            self.attack_reached += int(outcome.attack_reached.sum())
            self.undone_by_quantization += int(
                (outcome.attack_reached & ~outcome.reached_confidence).sum()
            )
        self.iterations += outcome.iterations.tolist()
        self.rho_of_successes += outcome.rho[outcome.success].tolist()

    def summary(self) -> dict[str, Any]:
        iterations = self.iterations or [0]
        return {
            "adversarial": self.adversarial,
            "catch": self.catch,
            "success": self.success,
            "reached_confidence": self.reached_confidence,
            "attack_reached_before_quantization": self.attack_reached,
            "undone_by_quantization": self.undone_by_quantization,
            "misclassified_original": self.misclassified_original,
            "target_is_true_label": self.target_is_true_label,
            "iterations_median": statistics.median(iterations),
            "iterations_max": max(iterations),
            "mean_rho_of_successes": statistics.fmean(self.rho_of_successes)
            if self.rho_of_successes
            else None,
        }


@dataclass(frozen=True)
class GenerationReport:
    bundle: Path
    seconds: float
    stats: dict[str, Any]

    @property
    def images_per_second(self) -> float:
        return self.stats["adversarial"] / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "seconds": round(self.seconds, 3),
            "adversarial_per_second": round(self.images_per_second, 2),
            **self.stats,
        }


def adversarial_outcomes(
    model: nn.Module,
    source: ImageSource,
    settings: AttackSettings,
    *,
    indices: torch.Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    progress: Any = None,
) -> Iterator[BatchOutcome]:
    """Attack `source` (or the `indices` of it) with the study protocol, then yield the
    stored, measured stimuli `batch_size` at a time in index order.

    The attack keeps `batch_size` images in flight (see model/stimuli/pool.py).
    `progress` is an optional callable taking the number of images just finished.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    order = torch.arange(len(source)) if indices is None else indices.long().cpu()
    images = source.images[order].to(device)
    labels = source.labels[order].to(device)
    run = attack_pool(model, images, settings, pool_size=batch_size, progress=progress)
    for start in range(0, order.numel(), batch_size):
        rows = slice(start, start + batch_size)
        yield store_and_measure(
            model, images[rows], labels[rows], order[rows], run.select(rows), settings
        )


def catch_outcome(
    model: nn.Module, plan: CatchPlan, *, device: torch.device | str = "cpu"
) -> BatchOutcome:
    """The catch trials of `plan`, measured like stimuli but never attacked."""
    chosen = torch.tensor(
        select_catch_indices(plan.source.labels, plan.count, plan.seed), dtype=torch.long
    )
    images = plan.source.images[chosen].to(device)
    labels = plan.source.labels[chosen].to(device)
    return measure_batch(model, images, images, labels, chosen)


def generate_bundle(
    model: nn.Module,
    meta: BundleMeta,
    source: ImageSource,
    out: str | Path,
    *,
    settings: AttackSettings = AttackSettings(),
    limit: int | None = None,
    catch: CatchPlan | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: Any = None,
) -> GenerationReport:
    """Attack the first `limit` images (all by default) of `source` and write a bundle at `out`.

    `meta` names the model (defense, network, seed, checkpoint hash); this function fills
    in how the stimuli were made (attack settings, source split, catch trials).
    """
    model.eval()
    count = len(source) if limit is None else min(limit, len(source))
    generation = {
        **settings.describe(),
        "source_split": source.split,
        "source_count": count,
        "batch_size": batch_size,
    }
    if catch is not None and catch.count > 0:
        generation["catch_trials"] = catch.describe()
    meta = dataclasses.replace(meta, dataset=source.dataset, attack={**meta.attack, **generation})
    stats = GenerationStats()
    started = time.perf_counter()
    outcomes = adversarial_outcomes(
        model,
        source,
        settings,
        indices=torch.arange(count),
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    if catch is not None and catch.count > 0:
        outcomes = _chain(outcomes, lambda: catch_outcome(model, catch, device=device))
    path = write_bundle(out, meta, _records(outcomes, meta, stats), overwrite=overwrite)
    return GenerationReport(
        bundle=path, seconds=time.perf_counter() - started, stats=stats.summary()
    )


def _chain(outcomes: Iterable[BatchOutcome], last: Any) -> Iterator[BatchOutcome]:
    yield from outcomes
    yield last()


def _records(
    outcomes: Iterable[BatchOutcome], meta: BundleMeta, stats: GenerationStats
) -> Iterator[tuple[StimulusRecord, bytes]]:
    for outcome in outcomes:
        stats.add(outcome)
        yield from outcome_records(outcome, meta)
