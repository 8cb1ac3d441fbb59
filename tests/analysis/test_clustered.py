"""The annotator bootstrap and the comparisons, held to simulated studies with a known answer.

People differ in how readily they see the target (annotator SD 1 on the logit scale) and
images differ in how convincing they are: the labels of one person are correlated, Wilson's
interval (labels as independent) covers the truth far less than 95% of the time, and the
annotator bootstrap should cover it 93-97% of the time (400 studies: Monte Carlo SE 1.1 pp).
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.clustered import clustered_share, compare_shares
from analysis.simulate import Annotators, Arm, Design, StimulusSet, simulate_counts
from analysis.stats import wilson_interval

STIMULI = StimulusSet.synthetic(2500, seed=1)


def _by_annotator(successes: np.ndarray, labels: np.ndarray) -> dict[int, tuple[int, int]]:
    return {a: (int(successes[a]), int(labels[a])) for a in range(len(labels)) if labels[a]}


def test_the_annotator_bootstrap_covers_the_truth_where_wilson_does_not():
    model = Annotators(change_rate=0.6, change_slope=4.0, annotator_sd=1.0, image_sd=1.0)
    truth = model.expected_shares(STIMULI)["change"]
    studies = simulate_counts(
        [Arm(STIMULI, model)], Design(assignments=100), replicates=400, seed=7
    )
    bootstrap = wilson = 0
    for r in range(400):
        shares = _by_annotator(studies.change[r, :, 0], studies.labels[:, 0])
        share = clustered_share(shares, seed=r, resamples=999)
        bootstrap += share.low <= truth <= share.high
        low, high = wilson_interval(share.count, share.total)
        wilson += low <= truth <= high
    assert 0.93 <= bootstrap / 400 <= 0.97, bootstrap / 400
    assert wilson / 400 < 0.85, wilson / 400


@pytest.mark.parametrize("interleaved", [False, True])
def test_comparisons_hold_their_level_under_no_difference_and_cover_a_real_one(interleaved):
    same = Annotators(change_rate=0.6, annotator_sd=1.0)
    arms = [Arm(STIMULI, same), Arm(STIMULI, same)]
    studies = simulate_counts(
        arms, Design(assignments=40, interleaved=interleaved), replicates=200, seed=11
    )
    rejected = covered = 0
    for r in range(200):
        first = _by_annotator(studies.change[r, :, 0], studies.labels[:, 0])
        second = _by_annotator(studies.change[r, :, 1], studies.labels[:, 1])
        d = compare_shares(first, second, seed=r, resamples=499, permutations=499)
        assert d.design == ("within-subject" if interleaved else "between-subject")
        rejected += d.p_value < 0.05
        covered += d.low <= 0.0 <= d.high
    assert 0.015 <= rejected / 200 <= 0.09, rejected / 200
    assert 0.91 <= covered / 200 <= 0.985, covered / 200


def test_within_subject_comparisons_are_narrower_when_people_differ_a_lot():
    arms = [
        Arm(STIMULI, Annotators(0.7, annotator_sd=2.0)),
        Arm(STIMULI, Annotators(0.6, annotator_sd=2.0)),
    ]
    widths = {}
    for interleaved in (False, True):
        study = simulate_counts(
            arms, Design(assignments=60, interleaved=interleaved), replicates=1, seed=3
        )
        d = compare_shares(
            _by_annotator(study.change[0, :, 0], study.labels[:, 0]),
            _by_annotator(study.change[0, :, 1], study.labels[:, 1]),
            permutations=199,
        )
        widths[interleaved] = d.high - d.low
    assert widths[True] < 0.75 * widths[False], widths


def test_edge_cases_are_explicit():
    assert clustered_share({"a": (3, 25)}) is None  # one person: no between-person variation
    none = clustered_share({"a": (0, 25), "b": (0, 25), "c": (0, 20)})
    assert (none.low, none.count) == (0.0, 0) and none.high == pytest.approx(
        wilson_interval(0, 3)[1]
    )
    assert "Wilson on annotators" in none.method
    every = clustered_share({"a": (25, 25), "b": (25, 25)})
    assert every.high == 1.0 and every.low == pytest.approx(wilson_interval(2, 2)[0])
    assert compare_shares({"a": (1, 2)}, {"b": (1, 2), "c": (0, 2)}) is None
    share = clustered_share({n: (n % 5, 5) for n in range(30)})
    assert share.low < share.fraction < share.high and share.design_effect > 0
    # The same data give the same interval (the seed is fixed, the order of people is not used).
    again = clustered_share(dict(reversed(list({n: (n % 5, 5) for n in range(30)}.items()))))
    assert (again.low, again.high) == (share.low, share.high)


def test_a_large_difference_is_significant_and_its_sign_is_ours_minus_baseline():
    ours = {f"w{n}": (20 + n % 5, 25) for n in range(30)}
    baseline = {f"v{n}": (n % 5, 25) for n in range(30)}
    d = compare_shares(ours, baseline, permutations=999)
    assert d.estimate == pytest.approx(
        (sum(s for s, _ in ours.values()) - sum(s for s, _ in baseline.values())) / 750
    )
    assert (
        d.low > 0.5 and d.p_value < 0.01 and d.annotators == (30, 30) and d.shared_annotators == 0
    )
