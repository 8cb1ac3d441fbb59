"""Returning flagged work to the pool, so that somebody else labels the assignment.

An assignment holds one set of labels (`labels` is unique per assignment and image). When a
market does not confirm a submission (a forged URL, work the person returned on the
market, work the researcher rejected), its assignment would otherwise stay without
countable labels for good, while the market reopens the place for a new person who would
then find nothing to do. `return_to_pool`, in the caller's transaction:

- copies the flagged labels into the audit of events (kind ``returned_to_pool``: position,
  label, response time, the reason), so nothing is lost, then deletes them from `labels`;
- marks the allocation ``expired`` (it no longer holds the assignment) and ``flagged`` with
  the reason; the allocation still ties the person to the study, so they cannot take part
  again (the entry of each market checks it);
- puts the assignment back to ``available``.

Market-neutral: `prolific sync` and `prolific reject` use it today, and MTurk's flagged work
can go the same way (the `deploy` branch returns flagged MTurk work to the pool as well; the
two are to be unified into this one operation).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Assignment,
    AssignmentStatus,
    Label,
    Verification,
    Worker,
)
from study_server.db.store import record_event


def return_to_pool(session: Session, *, allocation: Allocation, reason: str) -> int:
    """Release the allocation's assignment, archiving its labels; the number archived.

    Call inside a write transaction (`begin_write`); an allocation that no longer holds its
    assignment (expired, or released before) is only marked flagged.
    """
    allocation.verification = Verification.flagged
    allocation.verification_note = reason
    if allocation.status == AllocationStatus.expired:
        return 0
    assignment = session.scalar(
        select(Assignment).where(Assignment.id == allocation.assignment_id).with_for_update()
    )
    labels = session.execute(
        select(Label.position, Label.label, Label.response_ms)
        .where(Label.allocation_id == allocation.id)
        .order_by(Label.position)
    ).all()
    worker = session.scalar(select(Worker.external_id).where(Worker.id == allocation.worker_id))
    record_event(
        session,
        kind="returned_to_pool",
        study_id=allocation.study_id,
        worker=worker,
        assignment_id=allocation.assignment_id,
        detail={
            "allocation": allocation.id,
            "reason": reason,
            "was": allocation.status.value,
            "submitted_at": allocation.submitted_at.isoformat()
            if allocation.submitted_at
            else None,
            "labels": [list(row) for row in labels],
        },
    )
    session.execute(delete(Label).where(Label.allocation_id == allocation.id))
    allocation.status = AllocationStatus.expired
    if assignment is not None:
        assignment.status = AssignmentStatus.available
    return len(labels)
