"""Simulated annotators: the analysis recovers the parameters they were given.

One simulated study of three defenses goes through the whole analysis (label rows, Table 2,
comparisons, per-image consensus, psychometric bins) and through a CSV export and back.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.labels import AnalysisError, read_export
from analysis.simulate import (
    Annotators,
    Arm,
    Design,
    StimulusSet,
    export_csv,
    simulate_counts,
    simulate_study,
)
from analysis.table2 import compute_table2

RATES = {"ours": 0.85, "mm": 0.6, "reference": 0.05}


def _arms(image_sd: float = 1.0) -> list[Arm]:
    return [
        Arm(
            StimulusSet.synthetic(600, defense=defense, seed=n, n_catch=20),
            Annotators(rate, change_slope=8.0, annotator_sd=1.0, image_sd=image_sd),
        )
        for n, (defense, rate) in enumerate(RATES.items())
    ]


@pytest.fixture(scope="module")
def interleaved_k3():
    arms = _arms()
    design = Design(assignments=72, labels_per_image=3, interleaved=True, catch_per_assignment=1)
    studies = simulate_study(arms, design, seed=5)
    return arms, studies, compute_table2(studies, resamples=999, seed=1)


def test_the_expected_shares_are_what_many_studies_average_to():
    arm = _arms()[1]
    counts = simulate_counts([arm], Design(assignments=24), replicates=3000, seed=2)
    mean = counts.change[:, :, 0].sum(axis=1).mean() / counts.labels[:, 0].sum()
    expected = arm.annotators.expected_shares(arm.stimuli)
    assert mean == pytest.approx(expected["change"], abs=0.002)
    assert sum(expected.values()) == pytest.approx(1.0)


def test_table2_recovers_each_defenses_change_rate_within_its_interval(interleaved_k3):
    arms, _studies, table = interleaved_k3
    truth = {a.stimuli.defense: a.annotators.expected_shares(a.stimuli) for a in arms}
    assert {r.defense for r in table.results} == set(RATES)
    for result in table.results:
        for outcome in ("change", "no_change"):
            share = result.clustered[outcome]
            assert share.low <= truth[result.defense][outcome] <= share.high, (
                result.defense,
                outcome,
            )
        # 72 x 25 labels split over 3 defenses, every person sees every defense.
        assert result.outcomes.change.total == 600 * 3 and result.annotators == 216
        assert result.catch_accuracy.total == 216


def test_interleaved_comparisons_are_within_subject_and_find_the_real_differences(interleaved_k3):
    _, _, table = interleaved_k3
    change = {c.baseline: c for c in table.comparisons if c.outcome == "change"}
    assert set(change) == {"mm", "reference"}
    for c in change.values():
        assert c.difference.design == "within-subject" and c.difference.shared_annotators == 216
        assert c.difference.low > 0 and c.p_holm < 0.01


def test_k3_gives_per_image_consensus_and_agreement_that_grows_with_image_differences():
    design = Design(assignments=72, labels_per_image=3)
    kappas = []
    for image_sd in (0.0, 3.0):
        arm = Arm(
            StimulusSet.synthetic(600, seed=3),
            Annotators(0.5, annotator_sd=0.0, image_sd=image_sd, lapse_rate=0.0, other_rate=0.0),
        )
        (result,) = compute_table2(simulate_study([arm], design, seed=4), resamples=199).results
        c = result.consensus
        assert c.images == 600 and c.labels_per_image == {3: 600} and c.kappa_raters == 3
        shares = c.change.count + c.no_change.count + c.other.count + c.no_majority.count
        assert shares == 600 and "Fleiss' kappa" in c.sentence
        kappas.append(c.kappa)
    # Coin flips (all people and images alike) agree only by chance; convincing and
    # unconvincing images make people agree.
    assert abs(kappas[0]) < 0.1 and kappas[1] > 0.5, kappas


def test_psychometric_bins_cover_the_true_curve_and_the_fit_sees_the_slope(interleaved_k3):
    arms, _, table = interleaved_k3
    covered = total = 0
    for result in table.results:
        arm = next(a for a in arms if a.stimuli.defense == result.defense)
        curve = next(c for c in result.curves if c.variable == "rho")
        assert len(curve.bins) == 5 and sum(b.labels for b in curve.bins) == 1800
        truth = arm.annotators.marginal(
            arm.stimuli.rho,
            arm.annotators.reference(arm.stimuli),
            image_effect=arm.annotators.image_sd * arm.stimuli.image_z,
        )["change"]
        for b in curve.bins:
            inside = (arm.stimuli.rho >= b.low) & (arm.stimuli.rho <= b.high)
            share = b.shares["change"]
            covered += share.low <= truth[inside].mean() <= share.high
            total += 1
        assert curve.fit is not None and curve.fit.slope_low > 0  # change rises with rho
    assert covered >= total - 2, (covered, total)
    assert {c.variable for c in table.results[0].curves} == {"rho", "confidence"}


def test_a_simulated_export_reads_back_to_the_same_table(interleaved_k3, tmp_path):
    _, studies, table = interleaved_k3
    path = tmp_path / "labels.csv"
    path.write_text(export_csv(studies))
    again = compute_table2(read_export(path), resamples=999, seed=1)
    assert [r.outcomes for r in again.results] == [r.outcomes for r in table.results]
    assert [r.clustered for r in again.results] == [r.clustered for r in table.results]


def test_an_export_without_rho_still_reads_without_the_rho_curve(tmp_path):
    arm = _arms()[0]
    studies = simulate_study([arm], Design(assignments=4), seed=0)
    lines = export_csv(studies).splitlines()
    header = lines[0].split(",")
    drop = [header.index("rho"), header.index("stimulus_id")]
    old = [",".join(v for i, v in enumerate(line.split(",")) if i not in drop) for line in lines]
    path = tmp_path / "old.csv"
    path.write_text("\n".join(old) + "\n")
    (result,) = compute_table2(read_export(path)).results
    assert result.outcomes.change.total == 100
    assert [c.variable for c in result.curves] == ["confidence"] and result.consensus is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Annotators(1.5), "--change-rate must be in (0, 1), got 1.5"),
        (lambda: Annotators(0.5, lapse_rate=-0.1), "--lapse-rate must be in [0, 1], got -0.1"),
        (lambda: Annotators(0.5, annotator_sd=-1), "--annotator-sd must be 0 or more, got -1"),
        (lambda: Design(assignments=0), "--assignments must be a whole number >= 1, got 0"),
        (lambda: Design(assignments=5, labels_per_image=0), "--k must be a whole number >= 1"),
    ],
)
def test_bad_parameters_name_the_value(make, message):
    with pytest.raises(
        AnalysisError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        make()


def test_simulation_is_seeded():
    arm = _arms()[2]
    a = simulate_counts([arm], Design(assignments=10), replicates=3, seed=9)
    b = simulate_counts([arm], Design(assignments=10), replicates=3, seed=9)
    assert np.array_equal(a.change, b.change)
