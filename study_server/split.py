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
- Interleaved experiments (`interleave`): assignments that mix the stimuli of several
  defenses by a Latin square, so that nobody sees two versions of one source digit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class InterleavedLayout:
    """Assignments that mix the stimuli of several defenses (`interleave`)."""

    assignments: list[list[str]]  # stimulus keys in the order shown; group by group
    groups: int  # D: one Latin-square row per defense
    digits: int  # source digits laid out (those with a stimulus in every defense)
    # Adversarial stimuli left out, per defense: their source digit is not in every bundle.
    left_out: dict[str, int] = field(default_factory=dict)
    # Catch trials left out: another trial of the same digit was kept (the clean image of a
    # digit is the same in every bundle) ...
    catch_duplicates: int = 0
    # ... or no assignment was free of their digit.
    catch_left_out: int = 0


def _cut(items: Sequence[str], parts: int) -> list[list[str]]:
    """`items` cut into `parts` runs whose sizes differ by at most one."""
    base, remainder = divmod(len(items), parts)
    runs, start = [], 0
    for index in range(parts):
        size = base + (1 if index < remainder else 0)
        runs.append(list(items[start : start + size]))
        start += size
    return runs


def interleave(
    adversarial: Mapping[str, Sequence[tuple[str, int]]],
    catch: Sequence[tuple[str, int]] = (),
    *,
    items_per_assignment: int,
    seed: int,
) -> InterleavedLayout:
    """Assignments mixing D defenses' stimuli (`adversarial`: defense -> (key, source digit)),
    balanced by a Latin square, reproducible from `seed`:

    - the source digits that every defense has are cut into D blocks (keyed order "block");
      digits missing from some defense are left out (counted in `left_out`);
    - group g (g = 0 .. D-1) shows, of block b, the version of defense (b + g) mod D: each
      group shows every digit once, and over the D groups every (digit, defense) stimulus is
      shown exactly once, as in the per-defense layout;
    - a group is cut into ceil(digits / items_per_assignment) assignments by dealing each
      defense's stimuli (keyed order "deal-g") round-robin, continuing from one defense to
      the next: assignment sizes differ by at most one, and within an assignment the counts
      of the defenses differ by at most one;
    - catch trials (at most one per digit) are dealt round-robin over all assignments, each to
      the assignment with the fewest so far among those that do not show its digit
      adversarially (none free: left out, counted);
    - within an assignment the items are in keyed order ("order").

    No assignment holds two stimuli of one source digit (adversarial or catch)."""
    if items_per_assignment < 1:
        raise ValueError(f"items_per_assignment must be at least 1, got {items_per_assignment}")
    defenses = sorted(adversarial)
    if len(defenses) < 2:
        raise ValueError(f"an interleaved layout mixes at least two defenses, got {len(defenses)}")
    key_of: dict[str, dict[int, str]] = {}
    for defense in defenses:
        by_digit: dict[int, str] = {}
        for key, digit in adversarial[defense]:
            if digit in by_digit:
                raise ValueError(
                    f"defense {defense!r} has two stimuli of source digit {digit} "
                    f"({by_digit[digit]!r}, {key!r})"
                )
            by_digit[digit] = key
        key_of[defense] = by_digit
    common = set.intersection(*(set(digits) for digits in key_of.values()))
    if not common:
        raise ValueError("no source digit has a stimulus in every defense")
    left_out = {d: len(key_of[d]) - len(common) for d in defenses if len(key_of[d]) > len(common)}
    count = len(defenses)
    blocks = _cut(_keyed_order([str(s) for s in common], seed=seed, purpose="block"), count)
    per_group = math.ceil(len(common) / items_per_assignment)
    assignments: list[list[str]] = []
    shown: list[set[int]] = []
    for group in range(count):
        dealt: list[list[str]] = [[] for _ in range(per_group)]
        digits: list[set[int]] = [set() for _ in range(per_group)]
        turn = 0
        for index, defense in enumerate(defenses):
            block = blocks[(index - group) % count]
            keys = {key_of[defense][int(s)]: int(s) for s in block}
            for key in _keyed_order(list(keys), seed=seed, purpose=f"deal-{group}"):
                dealt[turn % per_group].append(key)
                digits[turn % per_group].add(keys[key])
                turn += 1
        assignments += dealt
        shown += digits
    kept: dict[int, str] = {}
    for key, digit in sorted(catch):
        kept.setdefault(digit, key)
    catch_left_out = 0
    digit_of = {key: digit for digit, key in kept.items()}
    dealt_catch = [0] * len(assignments)
    turn = 0
    for key in _keyed_order(list(digit_of), seed=seed, purpose="catch"):
        digit = digit_of[key]
        free = [index for index in range(len(assignments)) if digit not in shown[index]]
        if not free:
            catch_left_out += 1
            continue
        # The assignment with the fewest catch trials, the next in turn among equals.
        index = min(free, key=lambda i: (dealt_catch[i], (i - turn) % len(assignments)))
        assignments[index].append(key)
        shown[index].add(digit)
        dealt_catch[index] += 1
        turn = index + 1
    return InterleavedLayout(
        assignments=[_keyed_order(group, seed=seed, purpose="order") for group in assignments],
        groups=count,
        digits=len(common),
        left_out=left_out,
        catch_duplicates=len(catch) - len(kept),
        catch_left_out=catch_left_out,
    )
