"""Planning: the shortcut it takes (sandwich variance) against the full analysis, the N it
recommends, the costs, and the `plan` / `simulate` commands end to end."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image

from analysis.cli import main as analyze_study
from analysis.clustered import clustered_share, compare_shares
from analysis.plan import Costs, Goal, evaluate, make_plan
from analysis.simulate import Annotators, Arm, Design, StimulusSet, simulate_counts
from study_server.settings import MTurkSettings, Settings
from study_server.synthetic import write_synthetic_bundle

STIMULI = StimulusSet.synthetic(1500, seed=2)
COSTS = Costs(Decimal("0.50"), Decimal("0.20"), Decimal("1.00"), Decimal("0.333"))


def _sums(change, labels):
    return {a: (int(change[a]), int(labels[a])) for a in range(len(labels)) if labels[a]}


def test_the_planned_half_width_and_power_are_what_the_full_analysis_gives():
    arms = [Arm(STIMULI, Annotators(0.66)), Arm(STIMULI, Annotators(0.6))]
    design = Design(assignments=60)
    predicted = evaluate(arms, design, Goal(), replicates=2000, seed=1)
    counts = simulate_counts(arms, design, replicates=120, seed=2)
    widths, rejected = [], 0
    for r in range(120):
        first = _sums(counts.change[r, :, 0], counts.labels[:, 0])
        second = _sums(counts.change[r, :, 1], counts.labels[:, 1])
        share = clustered_share(first, seed=r, resamples=499)
        widths.append((share.high - share.low) / 2)
        rejected += (
            compare_shares(first, second, seed=r, resamples=199, permutations=499).p_value < 0.05
        )
    assert np.mean(widths) == pytest.approx(predicted.half_width[0], rel=0.08)
    assert rejected / 120 == pytest.approx(predicted.power[0], abs=0.12)


def test_the_recommended_assignments_meet_the_goal_and_half_of_them_do_not():
    arms = [Arm(STIMULI, Annotators(0.7)), Arm(STIMULI, Annotators(0.6))]
    plan = make_plan(arms, Design(assignments=50), Goal(power=0.8), COSTS, replicates=600, seed=0)
    by_n = {e.assignments: e for e in plan.evaluations}
    assert plan.needed in by_n and set(plan.needed_for) == {"power"}
    assert by_n[plan.needed].power[0] >= 0.78
    assert by_n[max(2, plan.needed // 2)].power[0] < 0.7
    shares = [arm.annotators.expected_shares(STIMULI)["change"] for arm in arms]
    assert plan.differences[0] == pytest.approx(shares[1] - shares[0])  # expected shares, not rates


def test_interleaving_needs_fewer_assignments_when_people_differ():
    arms = [
        Arm(STIMULI, Annotators(0.7, annotator_sd=1.5)),
        Arm(STIMULI, Annotators(0.6, annotator_sd=1.5)),
    ]
    needed = {
        interleaved: make_plan(
            arms, Design(assignments=50, interleaved=interleaved), Goal(), COSTS, replicates=400
        ).needed
        for interleaved in (False, True)
    }
    assert needed[True] < needed[False], needed


def test_costs_are_reward_plus_fee_per_assignment():
    assert COSTS.mturk(800) == Decimal("480.00")  # 400 x 2 defenses x 0.50 x 1.2
    assert COSTS.prolific(800) == Decimal("1066.40")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return [
        write_synthetic_bundle(root / d, n_adversarial=400, n_catch=20, defense=d, seed=n)
        for n, d in enumerate(("ours", "reference"))
    ]


def _settings():
    return Settings(mturk=MTurkSettings(reward_usd=Decimal("0.80"), fee_fraction=Decimal("0.2")))


def test_plan_command_reads_bundles_and_mturk_cost_from_settings(bundles, capsys):
    code = analyze_study(
        ["plan", "--bundle", str(bundles[0]), "--bundle", str(bundles[1]), "--change-rate", "0.6",
         "--difference", "0.1", "--assignments", "40", "--half-width", "0.05",
         "--replicates", "200", "--format", "json"],
        settings=_settings(),
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["needed_per_defense"] >= 2
    assert set(out["needed_for"]) == {"power", "half-width"}
    row = next(
        e for e in out["evaluations"] if e["assignments_per_defense"] == out["needed_per_defense"]
    )
    total = 2 * out["needed_per_defense"]
    assert Decimal(row["mturk_usd"]) == (Decimal("0.96") * total).quantize(Decimal("0.01"))
    assert [a["annotators"]["change_rate"] for a in out["arms"]] == pytest.approx([0.7, 0.6])

    code = analyze_study(
        ["plan", "--bundle", str(bundles[0]), "--change-rate", "0.6", "--difference", "0.1",
         "--interleaved", "--replicates", "100", "--prolific-reward", "1.25"],
        settings=_settings(),
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "**Needed:" in text and "ours/fc" in text and "1.25 + 33.3%" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--change-rate", "1.5"], "--change-rate must be in (0, 1), got 1.5"),
        (["--change-rate", "0.5", "--k", "0"], "--k must be a whole number >= 1, got 0"),
        (["--change-rate", "0.5", "--power", "2"], "--power must be in (0, 1), got 2.0"),
        (
            ["--change-rate", "0.5", "--change-rate", "0.4", "--change-rate", "0.3"],
            "--change-rate given 3 times",
        ),
        ([], "give --change-rate"),
    ],
)
def test_plan_bad_input_exits_2_naming_the_value(bundles, capsys, argv, message):
    code = analyze_study(["plan", "--bundle", str(bundles[0]), *argv], settings=_settings())
    assert code == 2 and message in capsys.readouterr().err


def test_plan_without_stimuli_or_with_a_missing_bundle_exits_2(capsys, tmp_path):
    assert analyze_study(["plan", "--change-rate", "0.5"], settings=_settings()) == 2
    assert "--bundle DIR or --study SLUG" in capsys.readouterr().err
    assert (
        analyze_study(
            ["plan", "--bundle", str(tmp_path / "no"), "--change-rate", "0.5"], settings=_settings()
        )
        == 2
    )
    assert "bundle folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_status:  # argparse's own bad-value exit
        analyze_study(["plan", "--bundle", str(tmp_path), "--mturk-fee", "x"], settings=_settings())
    assert exit_status.value.code == 2
    assert "--mturk-fee must be a number, got 'x'" in capsys.readouterr().err


def test_simulate_then_analyze_is_a_dry_run_with_a_known_answer(bundles, capsys, tmp_path):
    labels = tmp_path / "labels.csv"
    code = analyze_study(
        ["simulate", "--bundle", str(bundles[0]), "--bundle", str(bundles[1]), "--change-rate", "0.9",
         "--change-rate", "0.1", "--assignments", "16", "--k", "2", "--interleaved",
         "--catch-per-assignment", "1", "--out", str(labels)],
        settings=_settings(),
    )  # fmt: skip
    truth = json.loads(capsys.readouterr().out)["expected_shares"]
    assert code == 0 and set(truth) == {"ours-fc-sim", "reference-fc-sim"}
    figures = tmp_path / "figures"
    code = analyze_study(
        ["--all", "--export", str(labels), "--format", "json", "--figures", str(figures), "--resamples", "499"],
        settings=_settings(),
    )  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    for result in document["results"]:
        expected = truth[result["studies"][0]]["change"] * 100
        clustered = result["clustered"]["change"]
        assert clustered["ci95_low"] <= expected <= clustered["ci95_high"]
        assert result["per_image"]["labels_per_image"] == {"2": 200}
        assert [c["variable"] for c in result["psychometric"]] == ["rho", "confidence"]
    (comparison,) = [c for c in document["comparisons"] if c["outcome"] == "change"]
    assert comparison["design"] == "within-subject" and comparison["difference_pct"] > 50
    for name in ("table2", "psychometric_rho", "psychometric_confidence"):
        with Image.open(figures / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
        assert (figures / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert analyze_study(["simulate", "--bundle", str(bundles[0]), "--bundle", str(bundles[0]),
                          "--change-rate", "0.5", "--out", str(labels)], settings=_settings()) == 2  # fmt: skip
    assert "give different bundles" in capsys.readouterr().err
