"""The split into assignments: the paper's 400 x 25, reproducible, seeded, order-free."""

from __future__ import annotations

import random

import pytest

from study_server.split import split_into_assignments

KEYS = [f"adv-{i:05d}" for i in range(10_000)]


def test_ten_thousand_images_make_400_assignments_of_25():
    groups = split_into_assignments(KEYS, items_per_assignment=25, seed=0)
    assert len(groups) == 400
    assert {len(g) for g in groups} == {25}
    assert sorted(key for g in groups for key in g) == sorted(KEYS)


def test_split_is_reproducible_and_ignores_input_order():
    shuffled = KEYS[:]
    random.Random(1).shuffle(shuffled)
    first = split_into_assignments(KEYS, items_per_assignment=25, seed=7)
    assert split_into_assignments(shuffled, items_per_assignment=25, seed=7) == first
    assert split_into_assignments(KEYS, items_per_assignment=25, seed=8) != first


def test_uneven_sizes_differ_by_at_most_one_and_catch_trials_are_spread():
    catch = [f"catch-{i}" for i in range(7)]
    groups = split_into_assignments(KEYS[:103], catch, items_per_assignment=25, seed=0)
    assert len(groups) == 5
    adversarial_sizes = sorted(sum(k.startswith("adv") for k in g) for g in groups)
    assert adversarial_sizes == [20, 20, 21, 21, 21]
    catch_sizes = sorted(sum(k.startswith("catch") for k in g) for g in groups)
    assert catch_sizes == [1, 1, 1, 2, 2]


@pytest.mark.parametrize("size", [0, -3])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError, match="items_per_assignment"):
        split_into_assignments(KEYS[:10], items_per_assignment=size, seed=0)
