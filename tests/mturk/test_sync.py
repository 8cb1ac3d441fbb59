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
