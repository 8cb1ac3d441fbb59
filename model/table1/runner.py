"""Evaluate trained checkpoints for Table 1: test error and rho under the three attacks.

Attacks and the rho policy come from `model.attacks` and `model.metrics` (one
implementation for every number in the project). An evaluation is cached beside its
checkpoint (`table1-<preset>.json`), keyed by the checkpoint's SHA-256 and the exact attack
settings, so adding seeds to a table, or re-running after an interruption, only evaluates
what is new.
"""

from __future__ import annotations

import json
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
from model.table1.presets import EvaluationPreset
from model.table1.results import ATTACK_COLUMNS, AttackSummary, CheckpointEvaluation

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


def cache_path(checkpoint: Path, preset: EvaluationPreset) -> Path:
    return checkpoint.with_name(f"table1-{preset.name}.json")


def _read_cache(path: Path, sha256: str, preset: EvaluationPreset) -> CheckpointEvaluation | None:
    try:
        data = json.loads(path.read_text())
        if data["checkpoint_sha256"] != sha256 or data["settings"] != json.loads(
            json.dumps(preset.settings())
        ):
            return None
        return CheckpointEvaluation.from_dict(data["evaluation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, stale or damaged: evaluate again


def _write_cache(path: Path, evaluation: CheckpointEvaluation, preset: EvaluationPreset) -> None:
    payload = {
        "checkpoint_sha256": evaluation.checkpoint_sha256,
        "settings": preset.settings(),
        "evaluation": evaluation.to_dict(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


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
    """Test error on the whole test split and rho under each of the preset's attacks."""
    path = Path(path)
    sha256 = file_sha256(path)
    cached = _read_cache(cache_path(path, preset), sha256, preset) if use_cache else None
    if cached is not None:
        return cached
    net, checkpoint = load_classifier(path, device)
    images, labels = load_test_split(checkpoint.dataset)
    summaries = {}
    for name in ATTACK_COLUMNS:
        if name not in preset.attacks:
            continue
        started = time.perf_counter()
        subset = preset.subset(name, len(images))
        result = robustness(
            net,
            build_attack(name, **preset.attacks[name]),
            images[subset],
            labels[subset],
            name=f"{checkpoint.describe()} {name}",
            batch_size=preset.batch_size,
            device=device,
            show_progress=show_progress,
        )
        attacked_iterations = (
            [] if result.iterations is None else result.iterations[~result.misclassified].tolist()
        )
        iterations = float(statistics.median(attacked_iterations)) if attacked_iterations else None
        summaries[name] = AttackSummary(
            rho=result.rho,
            attacked=result.num_samples,
            failures=result.num_failures,
            misclassified=result.num_misclassified,
            median_iterations=iterations,
            seconds=time.perf_counter() - started,
        )
    evaluation = CheckpointEvaluation(
        checkpoint=str(path),
        checkpoint_sha256=sha256,
        defense=checkpoint.defense,
        network=checkpoint.network,
        dataset=checkpoint.dataset,
        seed=checkpoint.seed,
        epoch=checkpoint.epoch,
        preset=preset.name,
        test_error=test_error(net, images, labels, device=device),
        test_images=len(images),
        attacks=summaries,
    )
    _write_cache(cache_path(path, preset), evaluation, preset)
    return evaluation


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
