"""Attacks by name with the paper's evaluation settings, and batched execution.

The CLI, the evaluation and the stimuli generator all pick attacks from `ATTACKS`, so the
settings behind "deepfool", "cw", "hc" and "hc-authors" in Table 1 live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from model.attacks.base import Attack, AttackResult
from model.attacks.carlini_wagner import L2CarliniWagnerAttack
from model.attacks.deepfool import L2DeepFoolAttack
from model.attacks.fgsm import FGSM
from model.attacks.high_confidence import HighConfidenceAttack
from model.attacks.high_confidence_authors import AuthorsHighConfidenceAttack
from model.progress import progress

ATTACKS: dict[str, Callable[..., Attack]] = {
    "deepfool": L2DeepFoolAttack,
    "cw": L2CarliniWagnerAttack,
    "hc": HighConfidenceAttack,
    "hc-authors": AuthorsHighConfidenceAttack,
    "fgsm": FGSM,
}
ALIASES = {
    "df": "deepfool",
    "cw-l2": "cw",
    "carlini-wagner": "cw",
    "high-confidence": "hc",
    "high-confidence-authors": "hc-authors",
}


def attack_names() -> tuple[str, ...]:
    return tuple(ATTACKS)


def canonical_attack_name(name: str) -> str:
    """The registry name for `name`; ValueError listing the choices if unknown."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    return key


def build_attack(name: str, **overrides: Any) -> Attack:
    """An attack with the paper's settings, any keyword overridden (e.g. steps=100)."""
    return ATTACKS[canonical_attack_name(name)](**overrides)


def run_attack(
    attack: Attack,
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = 1000,
    show_progress: bool = False,
    desc: str = "attack",
    **kwargs: Any,
) -> AttackResult:
    """`attack` over `inputs` in batches of `batch_size`, results concatenated.

    Keyword arguments that are tensors with one row per input (e.g. `targets`,
    `confidence`) are sliced along with the batch; others are passed through.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(inputs)
    parts: list[AttackResult] = []
    starts = range(0, n, batch_size)
    for start in progress(
        starts, total=len(starts), desc=desc, unit="batch", enabled=show_progress
    ):
        rows = slice(start, start + batch_size)
        batch_kwargs = {
            key: value[rows]
            if isinstance(value, torch.Tensor) and value.ndim > 0 and len(value) == n
            else value
            for key, value in kwargs.items()
        }
        parts.append(
            attack(model, inputs[rows], None if labels is None else labels[rows], **batch_kwargs)
        )
    return concatenate_results(parts)


def concatenate_results(parts: list[AttackResult]) -> AttackResult:
    """One AttackResult from per-batch results (optional fields kept when every part has them)."""

    def join(field: str) -> torch.Tensor | None:
        values = [getattr(part, field) for part in parts]
        return None if any(value is None for value in values) else torch.cat(values)

    return AttackResult(
        *(
            join(field)
            for field in ("raw", "clipped", "success", "iterations", "targets", "confidence")
        )
    )
