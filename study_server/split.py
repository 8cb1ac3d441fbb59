"""How stimuli are dealt into assignments: seeded, reproducible, independent of file order.

Order comes from a keyed hash, SHA-256 of "<seed>:<purpose>:<stimulus id>", not from a random
number generator, so the same bundle and seed give the same split on any machine, Python or
NumPy version, and the manifest's order does not matter.

- Adversarial stimuli (the study proper) are shuffled and cut into ceil(n / k) assignments
  whose sizes differ by at most one: 10,000 images and k = 25 give the paper's 400 x 25.
- Catch trials (clean images with a known label, optional) are dealt round-robin on top,
  so each assignment gets its share instead of some getting none.
- Within an assignment the items are shuffled again, so catch trials sit anywhere.
- k labels per image (`replicate`): the layout is repeated k times, the same groups of
  images, each replica with its own order within an assignment (replica 0 is the layout
  itself, so k = 1 is unchanged). One allocation per person and study then makes the k labels
  of an image come from k different people.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence


def _keyed_order(keys: Sequence[str], *, seed: int, purpose: str) -> list[str]:
    return sorted(keys, key=lambda key: hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest())


def split_into_assignments(
    adversarial: Sequence[str],
    catch: Sequence[str] = (),
    *,
    items_per_assignment: int,
    seed: int,
) -> list[list[str]]:
    """Stimulus ids per assignment, in the order they are shown."""
    if items_per_assignment < 1:
        raise ValueError(f"items_per_assignment must be at least 1, got {items_per_assignment}")
    primary, extra = (adversarial, catch) if adversarial else (catch, ())
    if not primary:
        raise ValueError("a study needs at least one stimulus")
    shuffled = _keyed_order(primary, seed=seed, purpose="split")
    count = math.ceil(len(shuffled) / items_per_assignment)
    base, remainder = divmod(len(shuffled), count)
    groups: list[list[str]] = []
    start = 0
    for index in range(count):
        size = base + (1 if index < remainder else 0)
        groups.append(shuffled[start : start + size])
        start += size
    for index, key in enumerate(_keyed_order(extra, seed=seed, purpose="catch")):
        groups[index % count].append(key)
    return [_keyed_order(group, seed=seed, purpose="order") for group in groups]


def replicate(
    groups: Sequence[Sequence[str]], *, replicas: int, seed: int
) -> list[list[list[str]]]:
    """`replicas` copies of a layout: replica 0 as given, replica r > 0 with each assignment's
    items in their own keyed-hash order (purpose "order-r")."""
    if replicas < 1:
        raise ValueError(f"labels per image must be at least 1, got {replicas}")
    return [
        [list(group) for group in groups]
        if replica == 0
        else [_keyed_order(group, seed=seed, purpose=f"order-{replica}") for group in groups]
        for replica in range(replicas)
    ]
