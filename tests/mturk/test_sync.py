"""`mturk sync` re-checks flags, and survives HITs MTurk no longer knows."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from markets.mturk.cli import main as mturk
from study_server.db.models import Allocation, MTurkHit, Verification
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study
from tests.fixtures.mturk import cli_settings, do_hit, records_by_image


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _verification(url: str) -> Verification:
    session = session_for(url)
    try:
        return session.scalar(select(Allocation.verification))
    finally:
        session.close()


def _hit_ids(url: str) -> list[str]:
    session = session_for(url)
    try:
        return list(session.scalars(select(MTurkHit.hit_id).order_by(MTurkHit.slot)))
    finally:
        session.close()


def test_a_submission_mturk_had_not_heard_of_yet_is_confirmed_by_a_later_sync(
    sqlite_database_url, make_bundle, aws_env, live_server_factory, capsys
):
    url, fake = sqlite_database_url, aws_env
    bundle = make_bundle(n_adversarial=10)
    import_study(url, bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(url, fake)
    assert mturk(["publish", "--study", "ours-fc", "--url", server.url], settings) == 0
    hit_id = _hit_ids(url)[0]
    with server.client() as web:  # labels stored, but the browser has not reached MTurk yet
        done = do_hit(
            fake,
            web,
            hit_id=hit_id,
            worker_id="AWORKER1",
            by_image=records_by_image(bundle),
            external_submit=False,
        )
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    assert _verification(url) == Verification.flagged
    with httpx.Client(base_url=fake.url) as site:
        assert (
            site.post(
                "/mturk/externalSubmit", data={"assignmentId": done.assignment_id, "n": "5"}
            ).status_code
            == 200
        )
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    assert _verification(url) == Verification.confirmed
    assert "confirmed: 1, flagged: 0" in capsys.readouterr().out


def test_a_hit_mturk_no_longer_knows_is_reported_and_the_rest_is_synced(
    sqlite_database_url, make_bundle, aws_env, capsys
):
    url, fake = sqlite_database_url, aws_env
    import_study(url, make_bundle(n_adversarial=10), items_per_assignment=5)
    settings = cli_settings(url, fake)
    assert mturk(["publish", "--study", "ours-fc"], settings) == 0
    gone, kept = _hit_ids(url)
    fake.fake.accept(kept, "AWORKER1")
    fake.fake.accept(gone, "AWORKER2")
    del fake.fake._hits[gone]  # disposed of on MTurk's side (MTurk deletes old HITs)
    capsys.readouterr()
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    captured = capsys.readouterr()
    assert (
        f"assignments not listed for HIT {gone}" in captured.err
        and "HITDoesNotExist" in captured.err
    )
    assert "2 HITs, 1 listed by MTurk" in captured.out


def test_sync_watch_excludes_a_worker_minutes_after_they_submit(
    sqlite_database_url, make_bundle, aws_env, live_server_factory, capsys
):
    """`mturk sync --watch`: a line per run; a worker who submits between two runs holds the
    study's exclusion qualification after the next one (MTurk then hides the other HITs)."""
    from markets.mturk.cli import _watch, build_parser
    from study_server.db.access import study_sessions

    url, fake = sqlite_database_url, aws_env
    bundle = make_bundle(n_adversarial=10)
    import_study(url, bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(url, fake)
    assert mturk(["publish", "--study", "ours-fc", "--url", server.url], settings) == 0
    first, second = _hit_ids(url)
    slept = []

    def a_worker_submits_meanwhile(seconds: float) -> None:
        slept.append(seconds)
        with server.client() as web:
            do_hit(fake, web, hit_id=first, worker_id="AWATCHED", by_image=records_by_image(bundle))

    args = build_parser(settings).parse_args(
        ["sync", "--watch", "--every", "5m", "--study", "ours-fc", "--database-url", url]
    )
    capsys.readouterr()
    with study_sessions(url) as sessions:
        assert _watch(args, settings, sessions, 300, runs=2, sleep=a_worker_submits_meanwhile) == 0
    lines = capsys.readouterr().out.splitlines()
    assert slept == [300]
    assert "every 300 s" in lines[0]
    assert "run 1:" in lines[1] and "confirmed 0" in lines[1] and "excluded 0 new" in lines[1]
    assert "run 2:" in lines[2] and "confirmed 1" in lines[2] and "excluded 1 new" in lines[2]
    with fake.worker_site() as site:
        refused = site.post("/_worker/accept", json={"hitId": second, "workerId": "AWATCHED"})
    assert refused.status_code == 403 and "qualification" in refused.json()["error"]


def test_sync_watch_stops_on_ctrl_c_and_starts_again(
    sqlite_database_url, make_bundle, aws_env, monkeypatch
):
    import os
    import signal
    import subprocess
    import sys

    url, fake = sqlite_database_url, aws_env
    import_study(url, make_bundle(n_adversarial=10), items_per_assignment=5)
    assert mturk(["publish", "--study", "ours-fc"], cli_settings(url, fake)) == 0
    env = {
        **os.environ,
        "ADVCRITIC_MTURK_ENDPOINT_URL": fake.url,
        "ADVCRITIC_MTURK_MAX_RETRIES": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "markets.mturk", "sync", "--watch", "--every", "30s"]
    command += ["--study", "ours-fc", "--database-url", url]
    for _ in range(2):  # stopped, then started again: nothing lost, nothing in the way
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A shell's background job ignores SIGINT, and a child inherits that: give the
            # command Python's own Ctrl-C handling whatever started the test suite.
            preexec_fn=_default_sigint,
        )
        assert process.stdout is not None
        header, first_run = process.stdout.readline(), process.stdout.readline()
        assert "every 30 s" in header and "run 1: 2 HITs" in first_run, (header, first_run)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130 and "interrupted" in err


def test_sync_every_needs_a_time(sqlite_database_url, capsys):
    import_study_url = sqlite_database_url
    for bad in ("5 minutes", "10s", "0"):
        code = mturk(
            [
                "sync",
                "--watch",
                "--every",
                bad,
                "--study",
                "ours-fc",
                "--database-url",
                import_study_url,
            ],
            cli_settings(import_study_url),
        )
        assert code == 2 and repr(bad) in capsys.readouterr().err
