"""The `mturk` command line: bad input exits 2 with the bad value named, MTurk's refusals exit 1
with a message saying what to do, and the live marketplace is never reached by accident."""

from __future__ import annotations

import pytest

from markets.mturk.cli import main as mturk
from testkit.studies import attach_lab_texts, import_study
from tests.fixtures.mturk import cli_settings


@pytest.fixture
def study_db(sqlite_database_url, make_bundle):
    import_study(
        sqlite_database_url, make_bundle(n_adversarial=20), items_per_assignment=5
    )  # 4 HITs
    return sqlite_database_url


def _run(capsys, argv, settings) -> tuple[int, str, str]:
    code = mturk(argv, settings)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "--study", "nope"], "no study 'nope' in the database (studies: ours-fc)"),
        (
            ["publish", "--study", "ours-fc", "--url", "http://study.example.org"],
            "MTurk only frames HTTPS pages",
        ),
        (
            ["publish", "--study", "ours-fc", "--max-hits", "0"],
            "--max-hits must be at least 1, got 0",
        ),
        (
            ["publish", "--study", "ours-fc", "--confirm-cost", "2.40"],
            "--confirm-cost only applies with --live",
        ),
        (
            ["reject", "--study", "ours-fc", "--assignment", "3X", "--reason", "bad"],
            "reason of at least 10 characters",
        ),
        (
            ["reject", "--study", "ours-fc", "--assignment", "3X", "--reason", "no labels at all"],
            "not assignments of this study",
        ),
        (["approve", "--study", "ours-fc", "--assignment", "3X"], "not assignments of this study"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(capsys, study_db, aws_env, argv, message):
    code, _, err = _run(capsys, argv, cli_settings(study_db, aws_env))
    assert code == 2 and message in err
    assert aws_env.fake.hit_ids() == []


def test_the_real_mturk_is_only_given_https_pages(capsys, study_db):
    code, _, err = _run(
        capsys,
        ["publish", "--study", "ours-fc", "--url", "http://127.0.0.1:8000"],
        cli_settings(study_db),
    )
    assert code == 2 and "MTurk only frames HTTPS pages" in err


def test_a_database_that_does_not_exist_or_was_never_migrated_is_an_error(
    capsys, tmp_path, aws_env
):
    code, _, err = _run(
        capsys, ["status", "--study", "x"], cli_settings(f"sqlite:///{tmp_path}/typo.db", aws_env)
    )
    assert code == 2 and "no SQLite database at" in err
    empty = tmp_path / "empty.db"
    empty.touch()
    code, _, err = _run(
        capsys, ["status", "--study", "x"], cli_settings(f"sqlite:///{empty}", aws_env)
    )
    assert code == 2 and "run `study-server migrate`" in err


def test_the_live_marketplace_refuses_the_placeholder_texts_unless_told(capsys, study_db, aws_env):
    """A paid study without the lab's own consent text is an ethics violation: refused."""
    settings = cli_settings(study_db, aws_env)
    argv = ["publish", "--live", "--study", "ours-fc", "--confirm-cost", "2.40"]
    code, _, err = _run(capsys, argv, settings)
    assert code == 2 and "consent version 1 (the built-in default: 11 [EDIT: ...]" in err
    assert "--allow-unedited-texts" in err and aws_env.fake.hit_ids() == []
    code, out, err = _run(capsys, ["publish", "--study", "ours-fc", "--max-hits", "1"], settings)
    assert code == 0 and "note: not the lab's own text yet: consent version 1" in err  # sandbox
    more = ["--max-hits", "1", "--allow-unedited-texts"]
    code, out, _ = _run(capsys, [*argv[:-1], "0.60", *more], settings)
    assert code == 0 and "published 1 HIT(s) on the LIVE marketplace" in out


def test_the_live_marketplace_needs_the_exact_cost_confirmed(
    capsys, study_db, aws_env, monkeypatch
):
    attach_lab_texts(study_db, "ours-fc")
    settings = cli_settings(study_db, aws_env)
    code, out, err = _run(capsys, ["publish", "--live", "--study", "ours-fc"], settings)
    assert (
        code == 2
        and "rerun with --confirm-cost 2.40" in err
        and "4 x ($0.50 reward + $0.10 fee) = $2.40" in out
    )
    code, _, err = _run(
        capsys, ["publish", "--live", "--study", "ours-fc", "--confirm-cost", "1.00"], settings
    )
    assert code == 2 and "does not match the total cost $2.40" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    code, _, err = _run(
        capsys, ["publish", "--live", "--study", "ours-fc", "--max-hits", "1"], settings
    )
    assert code == 1 and "not confirmed; nothing published" in err
    assert aws_env.fake.hit_ids() == []
    monkeypatch.setattr("builtins.input", lambda prompt: "$0.60")
    code, out, _ = _run(
        capsys, ["publish", "--live", "--study", "ours-fc", "--max-hits", "1"], settings
    )
    assert code == 0 and "published 1 HIT(s) on the LIVE marketplace" in out
    code, out, _ = _run(
        capsys, ["publish", "--live", "--study", "ours-fc", "--confirm-cost", "1.80"], settings
    )
    assert code == 0 and "4 of 4 now published" in out and "worker.mturk.com/projects/" in out
    assert len(aws_env.fake.hit_ids()) == 4


def test_mturks_refusals_exit_1_with_what_to_do(capsys, study_db, aws_env, monkeypatch):
    settings = cli_settings(study_db, aws_env)
    aws_env.fake.set_balance("1.00")
    code, _, err = _run(capsys, ["publish", "--study", "ours-fc"], settings)
    assert code == 1 and "balance is $1.00, publishing costs $2.40" in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    code, _, err = _run(capsys, ["balance"], settings)
    assert code == 1 and "InvalidSignatureException" in err and "AWS_SECRET_ACCESS_KEY" in err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = _run(capsys, ["balance"], settings)
    assert code == 1 and "no usable AWS credentials" in err


def test_balance_and_help_need_no_study(capsys, study_db, aws_env):
    code, out, _ = _run(capsys, ["balance"], cli_settings(study_db, aws_env))
    assert code == 0 and out == "sandbox balance: $10000.00 available, $0.00 on hold\n"
    with pytest.raises(SystemExit) as done:
        mturk(["publish", "--help"], cli_settings(study_db))
    assert done.value.code == 0 and "--live" in capsys.readouterr().out
