"""The whole study on Prolific, simulated end to end over real HTTP, on SQLite and PostgreSQL.

`prolific publish` (httpx -> the loopback fake of Prolific) -> participants start on the
fake, open the study page on the live study server (uvicorn) with PROLIFIC_PID, STUDY_ID and
SESSION_ID, label every image, and go to Prolific's completion URL with the code the server
gives them -> someone forges a PROLIFIC_PID/SESSION_ID and stores labels too -> `prolific
sync` confirms the real ones, flags the forged one and returns its assignment to the pool,
where a new participant takes it -> `prolific approve` pays, `prolific reject` refuses one
(its assignment back to the pool too), `prolific bonus` pays once -> `analyze-study --source
prolific` counts exactly the confirmed, non-rejected labels.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select

from analysis.cli import main as analyze_study
from markets.prolific.cli import main as prolific
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Event,
    Label,
    ProlificBonus,
    ProlificStudy,
    Verification,
    Worker,
)
from testkit.databases import session_for
from testkit.studies import NO_ATTENTION_POLICY, attach_lab_texts, import_study
from tests.fixtures.mturk import records_by_image
from tests.fixtures.prolific import (
    open_study,
    participant,
    prolific_cli_settings,
    prolific_server_settings,
    take_part,
)

REJECTION = (
    "Every one of the 25 images was given the same label, which the instructions asked "
    "participants not to do; the answers cannot be used."
)


def _verification(url: str) -> dict[str, tuple[Verification, AllocationStatus, str | None]]:
    session = session_for(url)
    try:
        rows = session.execute(
            select(
                Worker.external_id,
                Allocation.verification,
                Allocation.status,
                Allocation.verification_note,
            ).join(Worker, Worker.id == Allocation.worker_id)
        )
        return {worker: (state, status, note) for worker, state, status, note in rows}
    finally:
        session.close()


def _count(url: str, *what) -> int:
    session = session_for(url)
    try:
        return session.scalar(select(func.count()).select_from(*what[:1]).where(*what[1:]))
    finally:
        session.close()


def _table(database_url: str, capsys, *extra: str) -> dict:
    capsys.readouterr()
    argv = ["--defense", "ours", "--net", "fc", "--format", "json", "--database-url", database_url]
    assert analyze_study([*argv, *extra]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    return result


def _expected(took: list) -> dict[str, int]:
    counts = {"change": 0, "no_change": 0, "other": 0}
    for person in took:
        for record, label in zip(person.records, person.labels, strict=True):
            if record.kind == "catch":
                continue
            key = (
                "change"
                if label == record.target
                else "no_change"
                if label == record.original_label
                else "other"
            )
            counts[key] += 1
    return counts


def test_publish_take_part_sync_approve_reject_bonus_and_analyse(
    database_url, make_bundle, fake_prolific, live_server_factory, capsys
):
    fake = fake_prolific
    bundle = make_bundle(n_adversarial=20, n_catch=4)
    # Counted by hand here, all of it: no attention policy (its effect is tested in
    # test_experiment_lifecycle.py and tests/analysis).
    import_study(database_url, bundle, items_per_assignment=5, protocol=NO_ATTENTION_POLICY)
    attach_lab_texts(database_url, "ours-fc")
    server = live_server_factory(prolific_server_settings(database_url, fake))
    settings = prolific_cli_settings(database_url, fake)
    before = fake.fake.balance(fake.workspace_id)["available_balance"]

    # 4 places x £1.00 + 33.3% service fee = £5.33, confirmed; the study page is the live server.
    argv = ["publish", "--study", "ours-fc", "--url", server.url, "--confirm-cost", "5.33"]
    assert prolific(argv, settings) == 0
    out = capsys.readouterr().out
    assert "4 place(s) x £1.00 reward = £4.00 + £1.33 service fee (33.3%) = £5.33" in out
    assert "published as Prolific study" in out and "(ACTIVE)" in out
    session = session_for(database_url)
    try:
        published = session.scalars(select(ProlificStudy)).one()
    finally:
        session.close()
    study_id = published.prolific_study_id
    remote = fake.fake.study(study_id)
    assert remote["total_available_places"] == 4 and remote["reward"] == 100
    assert remote["external_study_url"] == (
        f"{server.url}/prolific/ours-fc?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert remote["completion_codes"][0]["actions"] == [{"action": "MANUALLY_REVIEW"}]
    assert before - fake.fake.balance(fake.workspace_id)["available_balance"] == 533

    by_image = records_by_image(bundle)
    with server.client() as web:
        one = take_part(
            fake, web, study_id=study_id, participant_id=participant(1), by_image=by_image
        )
        two = take_part(
            fake, web, study_id=study_id, participant_id=participant(2), by_image=by_image
        )
        # Still labeling when sync runs: stored on the server, not yet completed on Prolific.
        three = take_part(
            fake,
            web,
            study_id=study_id,
            participant_id=participant(3),
            by_image=by_image,
            complete=False,
        )
        # Someone types a study URL with made-up ids: the server stores their labels...
        forged = {
            "PROLIFIC_PID": participant(99),
            "STUDY_ID": study_id,
            "SESSION_ID": "f" * 24,
        }
        query = "&".join(f"{k}={v}" for k, v in forged.items())
        _, ids, accepted = open_study(web, f"{server.url}/prolific/ours-fc?{query}")
        stored = web.post(
            accepted["submit_url"],
            json={
                **ids,
                "labels": [{"position": p, "label": 0} for p in range(accepted["num_items"])],
            },
        )
        assert stored.status_code == 200
        forged_assignment = accepted["assignment"]
        forged_labels = range(accepted["num_items"])
        # ... and gets a code, which is worth nothing: Prolific never heard of that session.
        assert web.post("/api/prolific/ours-fc/complete", json=ids).status_code == 200
    assert one.completion_url.endswith(f"cc={published.completion_code}")

    # Nothing is confirmed before `prolific sync`: the analysis refuses to make a table from it.
    assert analyze_study(["--defense", "ours", "--database-url", database_url]) == 2
    assert "not yet confirmed (run `prolific sync`)" in capsys.readouterr().err

    assert prolific(["sync", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "confirmed: 2, flagged: 1, still open on Prolific: 1" in out
    assert "Prolific lists no submission ffffffffffffffffffffffff" in out
    assert "returned to the pool: 1 assignment(s)" in out
    states = _verification(database_url)
    assert states[one.participant_id][0] == states[two.participant_id][0] == Verification.confirmed
    assert states[three.participant_id][0] == Verification.unverified
    assert states[participant(99)][:2] == (Verification.flagged, AllocationStatus.submitted)
    # The forged labels stay stored, excluded with the reason, and the assignment went back
    # to the pool.
    assert _count(database_url, Label) == sum(len(p.labels) for p in (one, two, three)) + len(
        forged_labels
    )
    session = session_for(database_url)
    try:
        flagged = session.scalars(select(Event).where(Event.kind == "submission_flagged")).one()
    finally:
        session.close()
    assert flagged.detail["assignment_now"] == "available"
    # Everyone who finished is now in the exclusion group the study blocklists.
    assert fake.fake.group_members(published.exclusion_group_id) == {
        one.participant_id,
        two.participant_id,
    }

    with server.client() as web:
        # The released assignment is the one the next participant gets.
        four = take_part(
            fake, web, study_id=study_id, participant_id=participant(4), by_image=by_image
        )
        assert (
            web.post("/api/prolific/ours-fc/complete", json=three.ids).status_code == 200
        )  # participant 3 finishes
        with fake.site() as site:
            site.cookies.set("prolific_participant", three.participant_id)
            assert (
                site.get(f"{fake.completion_url}?cc={published.completion_code}").status_code == 200
            )
    session = session_for(database_url)
    try:
        taken_again = session.scalar(
            select(func.count())
            .select_from(Allocation)
            .join(Worker, Worker.id == Allocation.worker_id)
            .where(Worker.external_id == participant(4))
        )
    finally:
        session.close()
    assert taken_again == 1 and forged_assignment  # (the page saw the forged assignment id)

    assert prolific(["sync", "--study", "ours-fc"], settings) == 0
    assert "confirmed: 4, flagged: 0, still open on Prolific: 0" in capsys.readouterr().out

    table = _table(database_url, capsys, "--source", "prolific")
    expected = _expected([one, two, three, four])
    assert (table["change"]["count"], table["no_change"]["count"], table["other"]["count"]) == (
        expected["change"],
        expected["no_change"],
        expected["other"],
    )
    assert table["annotators"] == 4 and list(table["labels_by_source"]) == ["prolific"]

    # Approve pays every confirmed submission; reject takes one named submission back.
    assert (
        prolific(
            [
                "reject",
                "--study",
                "ours-fc",
                "--submission",
                four.session_id,
                "--category",
                "LOW_EFFORT",
                "--message",
                REJECTION,
            ],
            settings,
        )
        == 0
    )
    assert fake.fake.submission(four.session_id)["status"] == "REJECTED"
    assert _verification(database_url)[four.participant_id][:2] == (
        Verification.flagged,
        AllocationStatus.submitted,
    )
    assert prolific(["approve", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "approved 3 submission(s)" in out
    for person in (one, two, three):
        assert fake.fake.submission(person.session_id)["status"] == "APPROVED"

    # A bonus: Prolific's own figures, confirmed, paid exactly once; a second is refused.
    argv = [
        "bonus",
        "--study",
        "ours-fc",
        "--bonus",
        f"{one.participant_id},0.50",
        "--reason",
        "perfect catch trials",
        "--confirm-cost",
        "0.67",
    ]
    assert prolific(argv, settings) == 0
    out = capsys.readouterr().out
    assert "1 bonus(es) = £0.50 + £0.17 fees = £0.67" in out and "paid 1 bonus(es)" in out
    session = session_for(database_url)
    try:
        bonus_row = session.scalars(select(ProlificBonus)).one()
    finally:
        session.close()
    assert bonus_row.status == "paid" and fake.fake.bulk_bonus_payments(bonus_row.bulk_id) == 1
    assert prolific(argv, settings) == 2
    assert "already given a bonus" in capsys.readouterr().err

    final = _table(database_url, capsys, "--source", "prolific")
    kept = _expected([one, two, three])
    assert (final["annotators"], final["change"]["count"]) == (3, kept["change"])

    assert prolific(["stop", "--study", "ours-fc"], settings) == 0
    assert prolific(["status", "--study", "ours-fc"], settings) == 0
    status = capsys.readouterr().out
    assert "COMPLETED (Prolific now); 4 place(s)" in status
    assert "APPROVED 3, REJECTED 1" in status
    assert "confirmed 3" in status and "returned to the pool: 2" in status
