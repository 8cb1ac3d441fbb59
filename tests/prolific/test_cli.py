"""The `prolific` command line: bad input exits 2 naming the value (a missing token, an
unknown study, a study already published, a bad category...), Prolific's refusals exit 1 with
its own words and what to do, money is never spent unconfirmed, and nothing is stored or made
on Prolific when a command is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from markets.prolific.cli import main as prolific
from study_server.db.models import Event, ProlificStudy
from testkit.databases import session_for
from testkit.studies import attach_lab_texts, import_study
from tests.fixtures.prolific import participant, prolific_cli_settings

REASON = "x" * 120


@pytest.fixture
def study_db(sqlite_database_url, make_bundle):
    import_study(sqlite_database_url, make_bundle(n_adversarial=20), items_per_assignment=5)
    attach_lab_texts(sqlite_database_url, "ours-fc")  # Prolific is always live
    return sqlite_database_url  # 4 assignments: 4 places, £4.00 + £1.33 = £5.33


def _run(capsys, argv, settings) -> tuple[int, str, str]:
    code = prolific(argv, settings)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stored(url: str) -> tuple[int, int]:
    session = session_for(url)
    try:
        return (
            session.scalar(select(func.count()).select_from(ProlificStudy)),
            session.scalar(select(func.count()).select_from(Event)),
        )
    finally:
        session.close()


PUBLISH = ["publish", "--study", "ours-fc", "--confirm-cost", "5.33"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "--study", "nope"], "no study 'nope' in the database (studies: ours-fc)"),
        ([*PUBLISH, "--url", "http://study.example.org"], "is plain http"),
        (["publish", "--study", "ours-fc"], "rerun with --confirm-cost 5.33"),
        (
            ["publish", "--study", "ours-fc", "--confirm-cost", "5"],
            "does not match the total cost £5.33",
        ),
        (["publish", "--study", "ours-fc", "--confirm-cost", "lots"], "must be an amount in GBP"),
        (["sync", "--study", "ours-fc"], "not on Prolific; publish it first"),
        (["approve", "--study", "ours-fc"], "not on Prolific; publish it first"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(capsys, study_db, fake_prolific, argv, message):
    before = _stored(study_db)
    code, _, err = _run(capsys, argv, prolific_cli_settings(study_db, fake_prolific))
    assert code == 2 and message in err, err
    assert fake_prolific.fake.list_studies() == [] and _stored(study_db) == before


def test_a_missing_token_is_bad_input_and_nothing_happens(capsys, study_db, fake_prolific):
    settings = prolific_cli_settings(study_db, fake_prolific, token=None)
    before = _stored(study_db)
    for argv in (PUBLISH, ["balance"]):
        code, _, err = _run(capsys, argv, settings)
        assert code == 2 and "no Prolific API token: set ADVCRITIC_PROLIFIC_TOKEN" in err
    assert fake_prolific.fake.calls == [] and _stored(study_db) == before


def test_the_token_is_read_from_the_environment(capsys, study_db, fake_prolific, monkeypatch):
    monkeypatch.setenv("PROLIFIC_TOKEN", fake_prolific.token)
    settings = prolific_cli_settings(study_db)
    settings.prolific = settings.prolific.model_copy(
        update={"api_url": fake_prolific.url, "workspace_id": fake_prolific.workspace_id}
    )
    code, out, _ = _run(capsys, ["balance"], settings)
    assert code == 0 and out == (
        f"workspace {fake_prolific.workspace_id}: £10000.00 available, £10000.00 in total\n"
    )


def test_a_study_already_published_is_refused_and_nothing_is_made_twice(
    capsys, study_db, fake_prolific
):
    settings = prolific_cli_settings(study_db, fake_prolific)
    assert _run(capsys, PUBLISH, settings)[0] == 0
    code, _, err = _run(capsys, PUBLISH, settings)
    assert code == 2 and "is already published on Prolific as study" in err
    assert "nothing done" in err and len(fake_prolific.fake.list_studies()) == 1


def test_prolifics_refusals_exit_1_with_its_words(capsys, study_db, fake_prolific, monkeypatch):
    before = _stored(study_db)
    code, _, err = _run(
        capsys, ["balance"], prolific_cli_settings(study_db, fake_prolific, token="wrong")
    )
    assert code == 1 and "HTTP 401" in err and "Invalid token." in err
    settings = prolific_cli_settings(study_db, fake_prolific)
    fake_prolific.fake.set_balance("5.00")
    code, _, err = _run(capsys, PUBLISH, settings)
    assert code == 1 and "available balance is £5.00, publishing costs £5.33" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    fake_prolific.fake.set_balance("100.00")
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    code, _, err = _run(capsys, ["publish", "--study", "ours-fc"], settings)
    assert code == 1 and "not confirmed; nothing published" in err
    assert fake_prolific.fake.list_studies() == [] and _stored(study_db) == before
    monkeypatch.setattr("builtins.input", lambda prompt: "£5.33")
    code, out, _ = _run(capsys, ["publish", "--study", "ours-fc"], settings)
    assert code == 0 and "(ACTIVE)" in out and "cost: £5.33 from the workspace" in out
    fake_prolific.fake.inject_faults(400)
    code, _, err = _run(capsys, ["pause", "--study", "ours-fc"], settings)
    assert code == 1 and "Prolific refused PAUSE study" in err and "HTTP 400" in err


def _reject(category: str, message: str) -> list[str]:
    return [
        "reject",
        "--study",
        "ours-fc",
        "--submission",
        "a" * 24,
        "--category",
        category,
        "--message",
        message,
    ]


def _bonus(entry: str) -> list[str]:
    return ["bonus", "--study", "ours-fc", "--bonus", entry]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (_reject("LAZY", REASON), "--category must be one of Prolific's rejection categories"),
        (_reject("LOW_EFFORT", "too short"), "at least 100 characters"),
        (_reject("LOW_EFFORT", REASON), "not confirmed submissions of this study awaiting review"),
        (
            ["approve", "--study", "ours-fc", "--submission", "a" * 24],
            "not confirmed submissions of this study",
        ),
        (_bonus(f"{participant(1)},0.50"), "not participants with a confirmed submission"),
        (_bonus(f"{participant(1)},-1"), "must be positive"),
        (_bonus(f"{participant(1)},0.505"), "at most two decimals"),
        (_bonus("0.50"), "expected PARTICIPANT_ID,AMOUNT"),
    ],
)
def test_reviews_and_bonuses_refuse_bad_input_with_exit_2(
    capsys, study_db, fake_prolific, argv, message
):
    settings = prolific_cli_settings(study_db, fake_prolific)
    assert _run(capsys, PUBLISH, settings)[0] == 0
    calls = len(fake_prolific.fake.calls)
    code, _, err = _run(capsys, argv, settings)
    assert code == 2 and message in err, err
    assert fake_prolific.fake.calls[calls:] == []


def test_pause_resume_stop_and_help_without_a_token(capsys, study_db, fake_prolific):
    settings = prolific_cli_settings(study_db, fake_prolific)
    assert _run(capsys, PUBLISH, settings)[0] == 0
    for command, now in (("pause", "PAUSED"), ("resume", "ACTIVE"), ("stop", "COMPLETED")):
        code, out, _ = _run(capsys, [command, "--study", "ours-fc"], settings)
        assert code == 0 and out.endswith(f"Prolific study is now {now}\n")
    code, out, _ = _run(capsys, ["status", "--study", "ours-fc", "--offline"], settings)
    assert code == 0 and "COMPLETED (database, offline)" in out
    with pytest.raises(SystemExit) as done:
        prolific(["publish", "--help"], prolific_cli_settings(study_db))
    assert done.value.code == 0 and "--confirm-cost" in capsys.readouterr().out


def test_an_unmigrated_database_is_bad_input(capsys, tmp_path, fake_prolific):
    settings = prolific_cli_settings(f"sqlite:///{tmp_path}/none.db", fake_prolific)
    code, _, err = _run(capsys, ["sync", "--study", "ours-fc"], settings)
    assert code == 2 and "no SQLite database at" in err
