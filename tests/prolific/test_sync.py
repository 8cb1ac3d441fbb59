"""`prolific sync` confirms a submission only when Prolific lists that session, for that
participant, finished; everything else it flags returns its assignment to the pool (once),
work finished on Prolific without labels here is reported, and the exclusion group grows
with everyone who is done with the study."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from markets.prolific.cli import main as prolific
from markets.prolific.models import Submission
from markets.prolific.store import ProlificWork
from markets.prolific.sync import decide
from study_server.db.models import Allocation, AllocationStatus, Assignment
from testkit.databases import session_for
from tests.fixtures.prolific import (
    participant,
    prolific_accept,
    take_part,
)

SESSION = "ab" * 12


def _work(session: str | None = SESSION, pid: int = 1) -> ProlificWork:
    return ProlificWork(
        allocation=Allocation(), participant_id=participant(pid), session_id=session
    )


def _listed(status: str, pid: int = 1) -> dict[str, Submission]:
    sub = Submission(
        id=SESSION,
        participant_id=participant(pid),
        status=status,
        started_at=datetime.now(UTC),
    )
    return {sub.id: sub}


@pytest.mark.parametrize(
    ("work", "listed", "verdict", "why"),
    [
        (_work(), _listed("AWAITING REVIEW"), "confirmed", None),
        (_work(), _listed("APPROVED"), "confirmed", None),
        (_work(), _listed("ACTIVE"), "pending", "still ACTIVE on Prolific"),
        (_work(), _listed("RETURNED"), "flagged", "RETURNED on Prolific"),
        (_work(), _listed("TIMED-OUT"), "flagged", "TIMED-OUT on Prolific"),
        (_work(), _listed("REJECTED"), "flagged", "rejected on Prolific"),
        (_work(), _listed("AWAITING REVIEW", pid=2), "flagged", f"not {participant(1)}"),
        (_work(), {}, "flagged", f"Prolific lists no submission {SESSION}"),
        (_work(session=None), _listed("AWAITING REVIEW"), "flagged", "no Prolific session"),
    ],
)
def test_what_prolific_lists_decides(work, listed, verdict, why):
    decided, reason = decide(work, listed)
    assert decided == verdict and (why is None and reason is None or why in reason)


def _assignments(url: str) -> dict[str, str]:
    session = session_for(url)
    try:
        return {a.public_id: a.status.value for a in session.scalars(select(Assignment))}
    finally:
        session.close()


def test_returned_timed_out_and_unmatched_work(prolific_running, fake_prolific, capsys):
    url, server, settings, study_id, by_image = prolific_running
    fake = fake_prolific.fake
    with server.client() as web:
        done = take_part(
            fake_prolific, web, study_id=study_id, participant_id=participant(1), by_image=by_image
        )
        # Stored labels, then returned the submission on Prolific: not paid, place reopened.
        returned = take_part(
            fake_prolific,
            web,
            study_id=study_id,
            participant_id=participant(2),
            by_image=by_image,
            complete=False,
        )
        fake.return_submission(returned.session_id)
        # Stored labels, then ran past Prolific's maximum time.
        late = take_part(
            fake_prolific,
            web,
            study_id=study_id,
            participant_id=participant(3),
            by_image=by_image,
            complete=False,
        )
        fake.time_out(late.session_id)
    # Someone finished on Prolific with the code without labels on the server.
    session_id, _ = fake.start(study_id, participant(4))
    fake.complete(participant(4), fake.study(study_id)["completion_codes"][0]["code"])
    assert prolific(["sync", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "confirmed: 1, flagged: 2, still open on Prolific: 0" in out
    assert "RETURNED on Prolific" in out and "TIMED-OUT on Prolific" in out
    assert "returned to the pool: 2 assignment(s)" in out
    assert "finished on Prolific without labels on the server (1)" in out and session_id in out
    assert "exclusion group: 4 participant(s) added" in out
    assert sorted(_assignments(url).values()) == [
        "available",
        "available",
        "available",
        "submitted",
    ]
    # A second sync changes nothing: nothing is released twice.
    assert prolific(["sync", "--study", "ours-fc"], settings) == 0
    again = capsys.readouterr().out
    assert "confirmed: 1, flagged: 0" in again and "returned to the pool: 0" in again
    assert "exclusion group: 0 participant(s) added" in again
    # Approving leaves the unmatched submission for the researcher to look at.
    assert prolific(["approve", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "approved 1 submission(s)" in out
    assert f"left for review (no confirmed labels on the server): {session_id}" in out
    assert fake.submission(done.session_id)["status"] == "APPROVED"
    assert fake.submission(session_id)["status"] == "AWAITING REVIEW"


def test_a_forged_participant_holding_an_assignment_is_released_and_kept_out(
    prolific_running, fake_prolific, capsys
):
    url, server, settings, study_id, _ = prolific_running
    ids = {"participant_id": participant(66), "study_id": study_id, "session_id": "e" * 24}
    with server.client() as web:
        held = prolific_accept(web, "ours-fc", ids)
        assert held.status_code == 200
        assert prolific(["sync", "--study", "ours-fc"], settings) == 0
        assert "returned to the pool: 1 assignment(s)" in capsys.readouterr().out
        assert _assignments(url)[held.json()["assignment"]] == "available"
        again = prolific_accept(web, "ours-fc", ids)
        assert again.status_code == 403 and "not confirmed by Prolific" in again.json()["detail"]
        late = web.post(
            held.json()["submit_url"],
            json={**ids, "labels": [{"position": p, "label": 1} for p in range(5)]},
        )
        assert late.status_code == 403 and "not confirmed by Prolific" in late.json()["detail"]
        assert _assignments(url)[held.json()["assignment"]] == "available"
    session = session_for(url)
    try:
        allocation = session.scalars(select(Allocation)).one()
    finally:
        session.close()
    assert allocation.status == AllocationStatus.expired
    assert "Prolific lists no submission eeeeeeeeeeeeeeeeeeeeeeee" in allocation.verification_note
