"""`mturk approve` / `mturk reject`: pay for work, or refuse it with a reason the worker sees.

Both act on what the last `mturk sync` stored. Without explicit ids, `approve` pays every
submitted assignment whose labels the server holds and MTurk confirmed; work MTurk shows as
submitted without labels on the server is left for the requester to look at. `reject` only
ever acts on ids named on the command line, with a reason: a rejection hurts a worker's
record, so it is never a default.

Each decision is stored (status, review note, an event) right after MTurk accepts it. One
refusal from MTurk (already approved, auto-approved meanwhile) does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from markets.console import ReviewReport
from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.publish import marketplace_name
from markets.mturk.store import mturk_assignments, study_hit_ids
from markets.mturk.sync import rejection_note
from study_server.allocation import release_flagged
from study_server.db.models import Allocation, AllocationStatus, MTurkAssignment, Verification
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event

MIN_REJECTION_REASON = 10


class ReviewRefused(ValueError):
    """The ids or the reason given cannot be acted on (unknown, not submitted, too vague)."""


def _submitted(session: Session, study_id: int, sandbox: bool) -> dict[str, MTurkAssignment]:
    hits = [
        hit_id
        for hit_id, is_sandbox in study_hit_ids(session, study_id=study_id).items()
        if is_sandbox == sandbox
    ]
    return mturk_assignments(session, hit_ids=hits)


def _pick(known: dict[str, MTurkAssignment], ids: Sequence[str]) -> list[MTurkAssignment]:
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ReviewRefused(
            "not assignments of this study on this marketplace (run `mturk sync` first?): "
            + ", ".join(unknown)
        )
    not_open = [f"{i} ({known[i].status})" for i in ids if known[i].status != "Submitted"]
    if not_open:
        raise ReviewRefused(f"only Submitted assignments can be reviewed: {', '.join(not_open)}")
    return [known[i] for i in ids]


def approve(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    study_slug: str,
    assignment_ids: Sequence[str] = (),
    feedback: str | None = None,
) -> ReviewReport:
    report = ReviewReport("Approved")
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        known = _submitted(session, study.id, client.sandbox)
        if assignment_ids:
            chosen = _pick(known, assignment_ids)
        else:
            confirmed = set(
                session.scalars(
                    select(Allocation.mturk_assignment_id).where(
                        Allocation.study_id == study.id,
                        Allocation.status == AllocationStatus.submitted,
                        Allocation.verification == Verification.confirmed,
                    )
                )
            )
            open_work = [row for row in known.values() if row.status == "Submitted"]
            chosen = [row for row in open_work if row.mturk_assignment_id in confirmed]
            report.left_for_review = sorted(
                row.mturk_assignment_id
                for row in open_work
                if row.mturk_assignment_id not in confirmed
            )
    _decide(
        sessions,
        study.id,
        client.sandbox,
        chosen,
        report,
        lambda a: client.approve(a, feedback),
        feedback,
    )
    return report


def reject(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    study_slug: str,
    assignment_ids: Sequence[str],
    reason: str,
) -> ReviewReport:
    if not assignment_ids:
        raise ReviewRefused("name the assignment ids to reject; rejection is never applied to all")
    if len(reason.strip()) < MIN_REJECTION_REASON:
        raise ReviewRefused(
            f"give the worker a reason of at least {MIN_REJECTION_REASON} characters, "
            f"got {reason!r}"
        )
    report = ReviewReport("Rejected")
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        chosen = _pick(_submitted(session, study.id, client.sandbox), assignment_ids)
    _decide(
        sessions,
        study.id,
        client.sandbox,
        chosen,
        report,
        lambda a: client.reject(a, reason.strip()),
        reason.strip(),
    )
    return report


def _exclude_rejected(session: Session, assignment_id: str, reason: str | None) -> None:
    """A rejected submission stops counting at once (the analysis reads `verification`), and
    its images go back to the pool to be labeled by someone else."""
    allocation = session.scalar(
        select(Allocation).where(Allocation.mturk_assignment_id == assignment_id)
    )
    if allocation is not None:
        release_flagged(session, allocation, reason=rejection_note(reason))


def _decide(
    sessions: sessionmaker[Session],
    study_id: int,
    sandbox: bool,
    chosen: list[MTurkAssignment],
    report: ReviewReport,
    act: Callable[[str], None],
    note: str | None,
) -> None:
    for row in chosen:
        assignment_id = row.mturk_assignment_id
        try:
            act(assignment_id)
        except errors.RequestRejected as error:
            report.failed.append((assignment_id, str(error)))
            continue
        with sessions() as session:
            begin_write(session)
            stored = session.scalar(
                select(MTurkAssignment).where(MTurkAssignment.mturk_assignment_id == assignment_id)
            )
            stored.status = report.decision
            stored.review_note = note
            if report.decision == "Rejected":
                _exclude_rejected(session, assignment_id, note)
            record_event(
                session,
                study_id=study_id,
                kind=f"mturk_{report.decision.lower()}",
                detail={
                    "assignment": assignment_id,
                    "hit": row.hit_id,
                    "note": note,
                    "marketplace": marketplace_name(sandbox),
                },
                worker=row.worker_external_id,
            )
            session.commit()
        report.done.append(assignment_id)
