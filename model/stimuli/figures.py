"""The paper's stimulus figures, computed with the same attack and quantisation as bundles.

Figure 2: one confidently, correctly classified test image per class (row = source class)
attacked toward every other class (column = target); the diagonal shows the originals.
Figure 4: a seeded random subset of test images, (a) clean, (b) just across the nearest
decision boundary (DeepFool), (c) the study's high-confidence attack; each panel's title
carries its mean confidence, as in the paper's caption (97% / 34% / 98% there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.stimuli.attack import AttackSettings, boundary_examples
from model.stimuli.generate import ImageSource
from model.stimuli.grids import Panel, as_grid, save_panels
from model.stimuli.outcome import attack_goal, predict_with_confidence, softmax_predictions
from model.stimuli.quantize import dequantize, quantize, to_numpy_pixels
from model.stimuli.store_and_measure import attack_and_measure


@dataclass(frozen=True)
class FigureResult:
    path: Path
    summary: dict[str, Any]


def pick_exemplars(
    model: nn.Module, source: ImageSource, num_classes: int, device: torch.device | str
) -> list[int]:
    """Per class, the index of the correctly classified image the model is surest of.

    Falls back to the surest image carrying that label when none is classified correctly;
    a class absent from `source` is an error (the grid would have a hole).
    """
    probabilities, prediction = _predict(model, source.images, device)
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(source.labels == label).flatten()
        if members.numel() == 0:
            raise ValueError(f"{source.dataset} {source.split} has no image of class {label}")
        correct = members[prediction[members] == label]
        pool = correct if correct.numel() else members
        chosen.append(int(pool[probabilities[pool, label].argmax()]))
    return chosen


def figure2(
    model: nn.Module,
    source: ImageSource,
    out: str | Path,
    *,
    settings: AttackSettings = AttackSettings(),
    confidence: float | None = None,
    class_names: list[str] | None = None,
    device: torch.device | str = "cpu",
) -> FigureResult:
    """Draw Figure 2; `confidence=None` uses each original's own confidence (the study's C)."""
    model.eval()
    classes = class_names or [str(c) for c in range(_num_classes(model, source, device))]
    k = len(classes)
    exemplars = pick_exemplars(model, source, k, device)
    originals = source.images[exemplars].to(device)
    rows, cols = zip(*[(r, c) for r in range(k) for c in range(k) if r != c], strict=True)
    rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
    images = originals[rows_t]
    _, clean_confidence = predict_with_confidence(model, originals)
    own = attack_goal(clean_confidence)[rows_t]
    wanted = own if confidence is None else torch.full_like(own, confidence)
    labels = source.labels[exemplars].to(device)[rows_t]
    outcome = attack_and_measure(
        model,
        images,
        labels,
        torch.tensor(exemplars)[rows_t.cpu()],
        settings,
        target=cols_t,
        confidence=wanted,
    )
    cells = np.zeros((k, k, *source.images.shape[-2:]), dtype=np.uint8)
    cells[range(k), range(k)] = to_numpy_pixels(quantize(originals))
    cells[list(rows), list(cols)] = to_numpy_pixels(outcome.pixels)
    failed = [
        (r, c)
        for r, c, ok in zip(rows, cols, outcome.reached_confidence.tolist(), strict=True)
        if not ok
    ]
    mean_target = float(outcome.confidence_stored.mean())
    goal = "original's confidence" if confidence is None else f"{confidence:.0%}"
    panel = Panel(
        cells=cells,
        title=f"goal p(target) >= {goal}\nmean p(target) {mean_target:.1%}; "
        f"{len(rows) - len(failed)}/{len(rows)} reached" + (" (red: not)" if failed else ""),
        row_labels=classes,
        column_labels=classes,
        row_axis="source class",
        column_axis="target class",
        marked=failed,
    )
    path = save_panels(
        [panel], out, suptitle="High-confidence attack: row = source, column = target"
    )
    summary = {
        "figure": "2",
        "exemplar_indices": exemplars,
        "original_confidence_mean": float(clean_confidence.mean()),
        "target_confidence_mean": mean_target,
        "reached": len(rows) - len(failed),
        "attacked": len(rows),
        "iterations_max": int(outcome.iterations.max()),
    }
    return FigureResult(path=path, summary=summary)


def figure4(
    model: nn.Module,
    source: ImageSource,
    out: str | Path,
    *,
    settings: AttackSettings = AttackSettings(),
    count: int = 100,
    columns: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> FigureResult:
    """Draw Figure 4 (clean / at the boundary / high confidence) for `count` random images."""
    model.eval()
    if not 1 <= count <= len(source):
        raise ValueError(f"figure 4 needs 1..{len(source)} images, got {count}")
    chosen = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:count]
    images = source.images[chosen].to(device)
    clean_probabilities, clean_prediction = softmax_predictions(model, images)
    boundary_pixels = quantize(boundary_examples(model, images))
    boundary_probabilities, boundary_prediction = softmax_predictions(
        model, dequantize(boundary_pixels, images.dtype)
    )
    strong = attack_and_measure(model, images, source.labels[chosen].to(device), chosen, settings)
    stats = {
        "clean_confidence_mean": float(clean_probabilities.max(dim=1).values.mean()),
        "boundary_confidence_mean": float(boundary_probabilities.max(dim=1).values.mean()),
        "boundary_still_adversarial": int((boundary_prediction != clean_prediction).sum()),
        "high_confidence_mean": float(strong.confidence_stored.mean()),
        "high_confidence_reached": int(strong.reached_confidence.sum()),
    }
    panels = [
        Panel(
            _grid(quantize(images), columns),
            f"(a) clean: mean confidence {stats['clean_confidence_mean']:.0%}",
        ),
        Panel(
            _grid(boundary_pixels, columns),
            "(b) at the boundary (DeepFool): mean confidence "
            f"{stats['boundary_confidence_mean']:.0%}",
        ),
        Panel(
            _grid(strong.pixels, columns),
            f"(c) high confidence: mean confidence {stats['high_confidence_mean']:.0%}",
        ),
    ]
    path = save_panels(panels, out)
    return FigureResult(path=path, summary={"figure": "4", "count": count, "seed": seed, **stats})


def _grid(pixels: torch.Tensor, columns: int) -> np.ndarray:
    return as_grid(to_numpy_pixels(pixels), columns)


@torch.no_grad()
def _predict(
    model: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    chunks = [
        softmax_predictions(model, images[i : i + batch_size].to(device))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat([c[0] for c in chunks]).cpu(), torch.cat([c[1] for c in chunks]).cpu()


def _num_classes(model: nn.Module, source: ImageSource, device: torch.device | str) -> int:
    with torch.no_grad():
        return int(model(source.images[:1].to(device)).shape[1])
