"""Evaluate trained checkpoints for Table 1: test error and rho under the three attacks.

Attacks and the rho policy come from `model.attacks` and `model.metrics` (one
implementation for every number in the project). Each attack's result is cached beside its
checkpoint on its own (`model.table1.cache`), keyed by the checkpoint's SHA-256, that
attack's exact settings and the images it ran on, so adding seeds or a column to a table,
or re-running after an interruption, only evaluates what is new.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from model.attacks import build_attack
from model.checkpoint import file_sha256, load_checkpoint, load_classifier
from model.metrics import robustness, test_error
from model.table1 import cache
from model.table1.presets import EvaluationPreset
from model.table1.results import (
    ATTACK_COLUMNS,
    AttackSummary,
    CheckpointEvaluation,
    rho_policy,
)

CHECKPOINT_NAME = "checkpoint.pt"
TestSplit = tuple[torch.Tensor, torch.Tensor]


def find_checkpoints(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Checkpoint files named by `paths`: files as given, folders searched recursively for
    `checkpoint.pt`. ValueError for a path that does not exist or holds none."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            inside = sorted(path.rglob(CHECKPOINT_NAME))
            if not inside:
                raise ValueError(f"no {CHECKPOINT_NAME} under {path}")
            found.extend(inside)
        else:
            raise ValueError(f"no such checkpoint or run folder: {path}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ValueError("no checkpoints given")
    return unique


def test_split_loader(root: str | os.PathLike[str] | None = None) -> Callable[[str], TestSplit]:
    """Loads each dataset's test split once per loader."""
    from model.datasets import load_dataset

    loaded: dict[str, TestSplit] = {}

    def load(dataset: str) -> TestSplit:
        if dataset not in loaded:
            images, labels = load_dataset(dataset, "test", root).tensors[:2]
            loaded[dataset] = (images, labels.long())
        return loaded[dataset]

    return load


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    preset: EvaluationPreset,
    *,
    load_test_split: Callable[[str], TestSplit],
    device: str | torch.device = "cpu",
    use_cache: bool = True,
    show_progress: bool = False,
) -> CheckpointEvaluation:
    """Test error on the whole test split and rho under each of the preset's attacks.

    Each attack is looked up in the cache on its own and only the missing ones run.
    """
    path = Path(path)
    sha256 = file_sha256(path)
    net, checkpoint = load_classifier(path, device)
    images, labels = load_test_split(checkpoint.dataset)
    error_key = cache.test_error_key(
        checkpoint_sha256=sha256, dataset=checkpoint.dataset, test_images=len(images)
    )
    error = cache.read_test_error(path, error_key) if use_cache else None
    if error is None:
        error = test_error(net, images, labels, device=device)
        cache.write_entry(path, error_key, error)
    summaries = {}
    for name in ATTACK_COLUMNS:
        if name not in preset.attacks:
            continue
        key = cache.attack_key(
            checkpoint_sha256=sha256,
            attack=name,
            overrides=preset.attacks[name],
            policy=rho_policy(name),
            limit=preset.limits.get(name),
            test_images=len(images),
        )
        summary = cache.read_summary(path, key) if use_cache else None
        if summary is None:
            summary = _run_attack(
                net, checkpoint.describe(), name, preset, images, labels, device, show_progress
            )
            cache.write_entry(path, key, dataclasses.asdict(summary))
        summaries[name] = summary
    return CheckpointEvaluation(
        checkpoint=str(path),
        checkpoint_sha256=sha256,
        defense=checkpoint.defense,
        network=checkpoint.network,
        dataset=checkpoint.dataset,
        seed=checkpoint.seed,
        epoch=checkpoint.epoch,
        preset=preset.name,
        test_error=error,
        test_images=len(images),
        attacks=summaries,
    )


def _run_attack(
    net: torch.nn.Module,
    description: str,
    name: str,
    preset: EvaluationPreset,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: str | torch.device,
    show_progress: bool,
) -> AttackSummary:
    """One attack on the preset's subset of the test split, summarised under its rho policy."""
    started = time.perf_counter()
    subset = preset.subset(name, len(images))
    authors = rho_policy(name) == "authors"
    result = robustness(
        net,
        build_attack(name, **preset.attacks[name]),
        images[subset],
        labels[subset],
        name=f"{description} {name}",
        batch_size=preset.batch_size,
        device=device,
        show_progress=show_progress,
        attack_misclassified=authors,
    )
    counted = torch.ones_like(result.misclassified) if authors else ~result.misclassified
    attacked_iterations = [] if result.iterations is None else result.iterations[counted].tolist()
    iterations = float(statistics.median(attacked_iterations)) if attacked_iterations else None
    return AttackSummary(
        rho=result.rho_with_failures if authors else result.rho,
        attacked=result.num_samples,
        failures=result.num_failures,
        misclassified=result.num_misclassified,
        median_iterations=iterations,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    dataset: str
    network: str
    defense: str
    seed: int
    epoch: int
    complete: bool


def describe_checkpoints(paths: Iterable[Path]) -> list[CheckpointInfo]:
    """What each checkpoint is, read before any (slow) evaluation starts.

    CheckpointError names a file that is not a readable checkpoint."""
    described = []
    for path in paths:
        c = load_checkpoint(path)
        complete = bool(c.metrics.get("complete", True))
        described.append(
            CheckpointInfo(path, c.dataset, c.network, c.defense, c.seed, c.epoch, complete)
        )
    return described
