"""The interleaved layout (`study_server.split.interleave`): over whole experiments of several
sizes, defenses and seeds, and every replica, nobody sees two versions of one source digit
(across defenses, and its clean catch image), every defense is equally represented in each
assignment, every stimulus is shown once per replica, and the layout is the seed's alone."""

from __future__ import annotations

from collections import Counter

import pytest

from study_server.split import interleave, replicate

DEFENSES = ("at", "mm", "ours", "reference", "vat")


def _experiment(defenses: int, digits: int, *, missing: int = 0, catch: int = 0):
    """`defenses` bundles of the same `digits` source digits (the last `missing` of them
    absent from the first bundle, as when an attack failed there), plus catch trials of
    `catch` digits, half of them digits shown adversarially."""
    adversarial = {
        defense: [
            (f"{defense}/adv-{digit:05d}", digit)
            for digit in range(digits)
            if not (index == 0 and digit >= digits - missing)
        ]
        for index, defense in enumerate(DEFENSES[:defenses])
    }
    trials = [
        (f"{DEFENSES[n % defenses]}/catch-{n:05d}", digit)
        for n, digit in enumerate(
            list(range(catch // 2)) + list(range(10_000, 10_000 + catch - catch // 2))
        )
    ]
    return adversarial, trials


def _digit_and_defense(key: str) -> tuple[int, str, str]:
    defense, name = key.split("/")
    kind, number = name.split("-")
    return int(number), defense, kind


def _check(layout, adversarial, trials, *, items: int, assignments=None) -> None:
    """The properties, on `layout`'s assignments or on those of one of its replicas."""
    assignments = layout.assignments if assignments is None else assignments
    defenses = sorted(adversarial)
    catch_digit = dict(trials)
    seen_stimuli: Counter[str] = Counter()
    for assignment in assignments:
        digits, counts = [], Counter()
        for key in assignment:
            seen_stimuli[key] += 1
            number, defense, kind = _digit_and_defense(key)
            if kind == "adv":
                digits.append(number)
                counts[defense] += 1
            else:
                digits.append(catch_digit[key])
        assert len(digits) == len(set(digits)), f"a source digit twice in {assignment}"
        present = [counts[d] for d in defenses]
        assert max(present) - min(present) <= 1, f"defenses unbalanced: {counts}"
    laid_out = {
        key
        for defense in defenses
        for key, digit in adversarial[defense]
        if digit in _common(adversarial)
    }
    shown = {k for k in seen_stimuli if "/adv-" in k}
    assert shown == laid_out  # every (digit, defense) of the common digits, once
    assert all(seen_stimuli[k] == 1 for k in seen_stimuli)
    per_group = len(assignments) // layout.groups
    sizes = [sum(1 for key in a if "/adv-" in key) for a in assignments]
    for group in range(layout.groups):
        part = sizes[group * per_group : (group + 1) * per_group]
        assert max(part) - min(part) <= 1 and max(part) <= items


def _common(adversarial) -> set[int]:
    return set.intersection(*({d for _, d in stimuli} for stimuli in adversarial.values()))


@pytest.mark.parametrize("defenses", [2, 3, 5])
@pytest.mark.parametrize(("digits", "items"), [(7, 3), (60, 25), (101, 10), (250, 25)])
@pytest.mark.parametrize("seed", [0, 1, 17])
def test_latin_square_property_over_whole_experiments(defenses, digits, items, seed):
    adversarial, trials = _experiment(defenses, digits, missing=digits // 10, catch=digits // 5)
    layout = interleave(adversarial, trials, items_per_assignment=items, seed=seed)
    assert layout.groups == defenses
    assert layout.digits == digits - digits // 10
    if digits // 10:
        assert layout.left_out == {d: digits // 10 for d in sorted(adversarial)[1:]}
    _check(layout, adversarial, trials, items=items)
    for replica in replicate(layout.assignments, replicas=3, seed=seed):
        _check(layout, adversarial, trials, items=items, assignments=replica)


def test_catch_trials_never_join_their_digit_and_are_spread():
    adversarial, trials = _experiment(3, 90, catch=30)
    layout = interleave(
        adversarial, [*trials, ("ours/catch-99999", 0)], items_per_assignment=10, seed=4
    )
    assert layout.catch_left_out == 0 and layout.catch_duplicates == 1  # digit 0 kept once
    per_assignment = [sum(1 for key in a if "/catch-" in key) for a in layout.assignments]
    assert sum(per_assignment) == 30 and max(per_assignment) - min(per_assignment) <= 1


def test_a_catch_trial_with_no_free_assignment_is_left_out():
    """One assignment per group: each shows every digit, so a digit's catch image fits nowhere."""
    adversarial, trials = _experiment(2, 6, catch=4)
    layout = interleave(adversarial, trials, items_per_assignment=25, seed=0)
    assert len(layout.assignments) == 2 and layout.catch_left_out == 2  # the two of shown digits
    assert layout.catch_duplicates == 0
    _check(layout, adversarial, trials, items=25)


def test_the_same_seed_gives_the_same_layout_and_another_seed_another():
    adversarial, trials = _experiment(3, 60, catch=10)
    first = interleave(adversarial, trials, items_per_assignment=10, seed=5)
    shuffled = {d: list(reversed(s)) for d, s in adversarial.items()}
    assert interleave(shuffled, trials[::-1], items_per_assignment=10, seed=5) == first
    assert interleave(adversarial, trials, items_per_assignment=10, seed=6) != first


def test_bad_experiments_are_refused_naming_why():
    with pytest.raises(ValueError, match="at least two defenses, got 1"):
        interleave({"ours": [("a", 1)]}, items_per_assignment=5, seed=0)
    with pytest.raises(ValueError, match="no source digit has a stimulus in every defense"):
        interleave({"ours": [("a", 1)], "at": [("b", 2)]}, items_per_assignment=5, seed=0)
    with pytest.raises(ValueError, match="two stimuli of source digit 1"):
        interleave({"ours": [("a", 1), ("c", 1)], "at": [("b", 1)]}, items_per_assignment=5, seed=0)
