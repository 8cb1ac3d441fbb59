"""`advcritic dry-run`: simulated annotators through the live server, on the markets' fakes.

The run is the real code end to end (import, uvicorn, `mturk`/`prolific` publish, the
labeling API, sync, approve, `analyze-study`); the checks are that the analysis recovers the
shares the simulated people were given, that what it prints is `analyze-study`'s, and that
bad input is exit status 2 naming the value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from analysis.cli import main as analyze_study
from analysis.simulate import Annotators
from pipeline.cli import main as advcritic
from pipeline.dry_run import DryRunPlan, dry_run
from study_server.db.models import Allocation, MTurkAssignment, ProlificSubmission
from study_server.synthetic import write_synthetic_bundle
from testkit.databases import session_for
from testkit.studies import import_study


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two defenses of 100 adversarial images and 20 catch trials: 20 assignments of 5 + 1."""
    root = tmp_path_factory.mktemp("dry-run-bundles")
    return {
        defense: write_synthetic_bundle(
            root / defense, n_adversarial=100, n_catch=20, defense=defense, seed=seed
        )
        for defense, seed in (("ours", 1), ("mm", 2))
    }


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 adversarial images and 4 catch trials: 4 assignments of 5 + 1."""
    return write_synthetic_bundle(
        tmp_path_factory.mktemp("dry-run-small") / "ours", n_adversarial=20, n_catch=4
    )


def _verification(url: str) -> list[str]:
    session = session_for(url)
    try:
        return [v.value for v in session.scalars(select(Allocation.verification))]
    finally:
        session.close()


def test_the_analysis_recovers_the_change_rates_the_simulated_people_were_given(
    bundles, tmp_path, capsys
):
    plan = DryRunPlan(
        bundles=(bundles["ours"], bundles["mm"]),
        annotators=(Annotators(change_rate=0.85), Annotators(change_rate=0.25)),
        items_per_assignment=5,
        workdir=tmp_path,
        resamples=999,
    )
    said: list[str] = []
    with dry_run(plan, say=said.append) as run:
        assert run.slugs == ("ours-fc", "mm-fc")
        found = {r.slug: r for r in run.recoveries}
    assert "    ours-fc: 20 confirmed, 0 flagged; 20 approved" in said
    assert _verification(run.database_url) == ["confirmed"] * 40
    session = session_for(run.database_url)
    try:  # the fake paid everyone the sync confirmed
        assert {a.status for a in session.scalars(select(MTurkAssignment))} == {"Approved"}
    finally:
        session.close()

    for recovery in found.values():
        assert recovery.result.outcomes.change.total == 100  # 20 people x 5 images
        assert recovery.result.annotators == 20
        for outcome in ("change", "no_change"):
            assert recovery.inside(outcome), (recovery.slug, outcome, recovery.expected)
        assert recovery.catch_inside()
    # The two defenses are told apart: ours' interval lies above the baseline's.
    assert found["ours-fc"].measured("change").low > found["mm-fc"].measured("change").high

    # What the dry run analysed is what `analyze-study` reads from the database it left.
    capsys.readouterr()
    argv = ["--all", "--format", "json", "--resamples", "999", "--database-url", run.database_url]
    assert analyze_study(argv) == 0
    printed = {
        row["studies"][0]: [
            row["clustered"]["change"][key] for key in ("percent", "ci95_low", "ci95_high")
        ]
        for row in json.loads(capsys.readouterr().out)["results"]
    }
    assert printed == {
        slug: pytest.approx(
            [100 * r.measured("change").fraction, *r.measured("change").interval_percent]
        )
        for slug, r in found.items()
    }


def test_a_dry_run_on_prolifics_fake_confirms_and_approves_every_participant(
    small_bundle, tmp_path
):
    plan = DryRunPlan(
        bundles=(small_bundle,),
        annotators=(Annotators(change_rate=0.6),),
        market="prolific",
        items_per_assignment=5,
        workdir=tmp_path,
        resamples=199,
    )
    said: list[str] = []
    with dry_run(plan, say=said.append) as run:
        (recovery,) = run.recoveries
    assert any("Prolific study" in line and "ACTIVE" in line for line in said), said
    assert _verification(run.database_url) == ["confirmed"] * 4
    session = session_for(run.database_url)
    try:
        assert {s.status for s in session.scalars(select(ProlificSubmission))} == {"APPROVED"}
    finally:
        session.close()
    assert recovery.result.outcomes.change.total == 20
    assert recovery.result.labels_by_source == {"prolific": 24}


def test_a_dry_run_with_three_labels_per_image_reports_agreement(small_bundle, tmp_path, capsys):
    """k = 3 through the live server on MTurk's fake: 3 replicas of 4 assignments, 12 people,
    every image labeled by 3 of them; analyze-study on the database reports kappa and the
    per-image majority from what the server stored."""
    argv = [
        "dry-run", "--bundle", str(small_bundle), "--change-rate", "0.7", "--items", "5",
        "--k", "3", "--resamples", "199", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert advcritic(argv) == 0
    out = capsys.readouterr().out
    assert "24 stimuli in 12 assignments (3 labels per image, from 3 different people)" in out
    assert "ours-fc: 12 HIT(s) on the sandbox of the fake" in out  # MaxAssignments 1 each
    assert "ours-fc: 12 people, one assignment each" in out
    assert "12 confirmed, 0 flagged; 12 approved" in out
    url = f"sqlite:///{(tmp_path / 'dry-run.db').resolve()}"
    assert analyze_study(["--study", "ours-fc", "--database-url", url]) == 0
    report = capsys.readouterr().out
    assert "per image (majority)" in report
    assert "over 20 images with 3 labels each" in report and "Fleiss' kappa = " in report


@pytest.mark.postgres
def test_a_dry_run_on_postgresql(database_factory, small_bundle):
    url = database_factory("postgres")
    plan = DryRunPlan(
        bundles=(small_bundle,),
        annotators=(Annotators(change_rate=0.6),),
        items_per_assignment=5,
        database_url=url,
        assignments=3,
        resamples=199,
    )
    with dry_run(plan, say=lambda line: None) as run:
        (recovery,) = run.recoveries
    assert _verification(url) == ["confirmed"] * 3
    assert recovery.result.annotators == 3


def test_the_command_prints_table_2_beside_the_parameters_given(small_bundle, tmp_path, capsys):
    argv = [
        "dry-run", "--bundle", str(small_bundle), "--change-rate", "0.7", "--change-slope", "5",
        "--items", "5", "--resamples", "199", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert advcritic(argv) == 0
    out = capsys.readouterr().out
    assert "==> 4/5 simulated people label through the live server" in out
    assert "| ours-fc | 0.7 | 5 |" in out  # the parameters given
    assert "Table 2 of the dry run beside the known answer" in out
    assert "| ours-fc | 20 | 4 |" in out  # 20 labels from 4 people
    assert f"analyze-study --all --database-url sqlite:///{tmp_path.resolve()}" in out
    assert (tmp_path / "dry-run.db").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--change-rate", "0.5", "--change-rate", "0.6"], "--change-rate given 2 times for 1"),
        (["--change-rate", "1.5"], "--change-rate must be in (0, 1), got 1.5"),
        (["--change-rate", "0.5", "--assignments", "0"], "--assignments must be at least 1, got 0"),
        (["--change-rate", "0.5", "--assignments", "9"], "--assignments 9 is more than study"),
        (["--change-rate", "0.5", "--items", "0"], "--items must be at least 1, got 0"),
        (["--change-rate", "0.5", "--k", "0"], "--k must be at least 1, got 0"),
        (["--change-rate", "0.5", "--port", "70000"], "--port must be between 0 and 65535"),
        (["--change-rate", "0.5", "--bundle", "SAME"], "two bundles of ours/fc"),
        (["--change-rate", "0.5", "--bundle", "/nonexistent"], "--bundle /nonexistent"),
        (["--change-rate", "0.5", "--database-url", "nonsense"], "is not a database URL"),
    ],
)
def test_bad_input_is_exit_status_2_naming_the_value(
    small_bundle, tmp_path, capsys, extra, message
):
    extra = [str(small_bundle) if value == "SAME" else value for value in extra]
    argv = ["dry-run", "--bundle", str(small_bundle), "--items", "5", "--workdir", str(tmp_path)]
    assert advcritic([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_database_that_holds_a_study_is_refused(
    small_bundle, sqlite_database_url, tmp_path, capsys
):
    import_study(sqlite_database_url, small_bundle)
    argv = ["dry-run", "--bundle", str(small_bundle), "--change-rate", "0.5", "--items", "5"]
    assert advcritic([*argv, "--database-url", sqlite_database_url]) == 2
    assert "already holds 1 stud(ies): a dry run needs a database of its own" in (
        capsys.readouterr().err
    )
    assert advcritic([*argv, "--workdir", str(tmp_path), "--assignments", "1"]) == 0
    assert advcritic([*argv, "--workdir", str(tmp_path)]) == 2  # the same folder again
    assert "holds an earlier dry run: remove it or choose another --workdir" in (
        capsys.readouterr().err
    )
