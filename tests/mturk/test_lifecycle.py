"""The whole study on MTurk, simulated end to end over real HTTP, on SQLite and PostgreSQL.

`mturk publish` (boto3 -> the loopback fake of MTurk) -> workers accept HITs on the fake's
worker site, open our HIT page on the live study server (uvicorn), label every image and
post to the fake's /mturk/externalSubmit -> `mturk sync` confirms them and flags a forged
submission -> `mturk approve` pays, `mturk reject` refuses one -> `analyze-study` counts
exactly the confirmed, non-rejected labels.
"""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import select

from analysis.cli import main as analyze_study
from markets.mturk.cli import main as mturk
from study_server.db.models import Allocation, MTurkAssignment, MTurkHit, Verification, Worker
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import NO_ATTENTION_POLICY, import_study
from tests.fixtures.mturk import cli_settings, do_hit, open_assignment, records_by_image


def _hits(url: str) -> list[str]:
    session = session_for(url)
    try:
        return list(session.scalars(select(MTurkHit.hit_id).order_by(MTurkHit.slot)))
    finally:
        session.close()


def _verification(url: str) -> dict[str, tuple[Verification, str | None]]:
    session = session_for(url)
    try:
        rows = session.execute(
            select(Worker.external_id, Allocation.verification, Allocation.verification_note).join(
                Worker, Worker.id == Allocation.worker_id
            )
        )
        return {worker: (state, note) for worker, state, note in rows}
    finally:
        session.close()


def _expected(done: list) -> dict[str, int]:
    """Change / no change / other / catch counted by hand from what the workers were shown."""
    counts = {"change": 0, "no_change": 0, "other": 0, "catch": 0, "catch_correct": 0}
    for hit in done:
        for record, label in zip(hit.records, hit.labels, strict=True):
            if record.kind == "catch":
                counts["catch"] += 1
                counts["catch_correct"] += label == record.original_label
            elif label == record.target:
                counts["change"] += 1
            elif label == record.original_label:
                counts["no_change"] += 1
            else:
                counts["other"] += 1
    return counts


def _table(database_url: str, capsys) -> dict:
    capsys.readouterr()
    assert (
        analyze_study(
            ["--defense", "ours", "--net", "fc", "--format", "json", "--database-url", database_url]
        )
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)["results"]
    return result


def test_publish_work_sync_approve_reject_and_analyse(
    database_url, make_bundle, aws_env, live_server_factory, capsys
):
    fake = aws_env
    bundle = make_bundle(n_adversarial=20, n_catch=4)
    # Counted by hand here, all of it: no attention policy (its effect is tested in
    # test_experiment_lifecycle.py and tests/analysis).
    import_study(database_url, bundle, items_per_assignment=5, protocol=NO_ATTENTION_POLICY)
    server = live_server_factory(make_settings(database_url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(database_url, fake)

    assert mturk(["publish", "--sandbox", "--study", "ours-fc", "--url", server.url], settings) == 0
    assert "published 4 HIT(s) on the sandbox" in capsys.readouterr().out
    hits = _hits(database_url)
    assert len(hits) == 4

    by_image = records_by_image(bundle)
    with server.client() as web:
        one = do_hit(fake, web, hit_id=hits[0], worker_id="AWORKERONE", by_image=by_image)
        two = do_hit(fake, web, hit_id=hits[1], worker_id="AWORKERTWO", by_image=by_image)
        # Someone crafts a HIT page URL with a real HIT id but an assignment MTurk never gave out.
        forged_url = (
            f"{server.url}/hit/ours-fc?assignmentId=FORGED1&hitId={hits[2]}"
            f"&workerId=AFORGER&turkSubmitTo={fake.url}"
        )
        _params, accepted = open_assignment(web, forged_url)
        stored = web.post(
            accepted["submit_url"],
            json={
                "worker_id": "AFORGER",
                "mturk_assignment_id": "FORGED1",
                "labels": [{"position": p, "label": 0} for p in range(accepted["num_items"])],
            },
        )
        assert stored.status_code == 200

    # Nothing is confirmed before `mturk sync`: the analysis refuses to make a table from it.
    assert analyze_study(["--defense", "ours", "--database-url", database_url]) == 2
    assert "not yet confirmed (run `mturk sync`)" in capsys.readouterr().err

    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "confirmed: 2, flagged: 1" in out and "FORGED1" in out
    states = _verification(database_url)
    assert states["AWORKERONE"][0] == states["AWORKERTWO"][0] == Verification.confirmed
    assert states["AFORGER"][0] == Verification.flagged and "FORGED1" in states["AFORGER"][1]
    # Participants now hold the study's exclusion qualification: its other HITs are closed to them.
    with fake.worker_site() as site:
        refused = site.post("/_worker/accept", json={"hitId": hits[2], "workerId": "AWORKERONE"})
    assert refused.status_code == 403 and "qualification" in refused.json()["error"]

    table = _table(database_url, capsys)
    expected = _expected([one, two])
    assert (table["change"]["count"], table["no_change"]["count"], table["other"]["count"]) == (
        expected["change"],
        expected["no_change"],
        expected["other"],
    )
    assert table["change"]["total"] == 10 and table["annotators"] == 2
    assert (
        table["catch_accuracy"]["count"] == expected["catch_correct"]
        and table["catch_accuracy"]["total"] == 2
    )
    assert table["excluded"] == {
        "MTurk submission flagged (not confirmed by MTurk, or rejected)": 6
    }

    before = fake.fake.handle("GetAccountBalance", {})
    assert mturk(["approve", "--study", "ours-fc"], settings) == 0
    assert "approved 2 assignment(s)" in capsys.readouterr().out
    after = fake.fake.handle("GetAccountBalance", {})
    assert Decimal(before["OnHoldBalance"]) - Decimal(after["OnHoldBalance"]) == Decimal(
        "1.20"
    )  # 2 x ($0.50 + 20%)
    for assignment in (one.assignment_id, two.assignment_id):
        assert (
            fake.fake.handle("GetAssignment", {"AssignmentId": assignment})["Assignment"][
                "AssignmentStatus"
            ]
            == "Approved"
        )

    with server.client() as web:
        three = do_hit(fake, web, hit_id=hits[3], worker_id="AWORKERTHREE", by_image=by_image)
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    assert _table(database_url, capsys)["annotators"] == 3
    assert (
        mturk(
            [
                "reject",
                "--study",
                "ours-fc",
                "--assignment",
                three.assignment_id,
                "--reason",
                "Every image was given the same label.",
            ],
            settings,
        )
        == 0
    )
    assert (
        fake.fake.handle("GetAssignment", {"AssignmentId": three.assignment_id})["Assignment"][
            "AssignmentStatus"
        ]
        == "Rejected"
    )
    assert _verification(database_url)["AWORKERTHREE"][0] == Verification.flagged
    assert (
        mturk(["sync", "--study", "ours-fc"], settings) == 0
    )  # a later sync keeps the rejection out
    assert "rejected on MTurk" in _verification(database_url)["AWORKERTHREE"][1]
    final = _table(database_url, capsys)
    assert (final["annotators"], final["change"]["count"]) == (2, expected["change"])

    session = session_for(database_url)
    try:
        statuses = {
            worker: status
            for worker, status in session.execute(
                select(MTurkAssignment.worker_external_id, MTurkAssignment.status)
            )
        }
    finally:
        session.close()
    assert statuses == {
        "AWORKERONE": "Approved",
        "AWORKERTWO": "Approved",
        "AWORKERTHREE": "Rejected",
    }

    assert mturk(["expire", "--study", "ours-fc"], settings) == 0
    assert "expired 4 open HIT(s)" in capsys.readouterr().out
    assert mturk(["status", "--study", "ours-fc"], settings) == 0
    status = capsys.readouterr().out
    assert "4 of 4 HITs published" in status and "Approved 2, Rejected 1" in status
    assert "confirmed 2, flagged 2" in status
