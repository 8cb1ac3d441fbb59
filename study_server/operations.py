"""The study's reusable database operations: accept, serve an item, submit, progress.

Each write operation is one transaction that it opens itself (`begin_write`), so the rules
of the study hold under concurrency on both backends:

- a worker holds at most one allocation per study, ever (unique study+worker): once
  submitted, they cannot take a second assignment; while active, accepting again returns
  the same assignment (a reload, or a returned HIT accepted anew);
- an allocation not submitted within the timeout is expired lazily, at the next accept, and
  its assignment goes back to the pool; a late submission is still taken if nobody else
  has the assignment by then;
- a submission stores all labels in one transaction or none; sending the same labels again
  answers as the first time did (retries are safe), different labels are refused.

On PostgreSQL the rows that decide these are locked (`FOR UPDATE`, `SKIP LOCKED` to pick a
free assignment); on SQLite, `BEGIN IMMEDIATE` serialises writers. Unique constraints in
the schema are the last line of defence; a transaction that loses a race on them is
retried from the start.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Assignment,
    AssignmentItem,
    AssignmentStatus,
    Label,
    MTurkHit,
    Stimulus,
    Study,
    Verification,
    Worker,
    WorkerSource,
)
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event
from study_server.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError

T = TypeVar("T")
# PostgreSQL's "serialization failure" and "deadlock detected": safe to retry from the start.
_RETRYABLE_PGCODES = {"40001", "40P01"}
_ATTEMPTS = 4


@dataclass(frozen=True)
class WorkerRef:
    source: WorkerSource
    external_id: str


@dataclass(frozen=True)
class MTurkContext:
    """What MTurk appended to the HIT page's URL for an accepted HIT."""

    assignment_id: str
    hit_id: str
    turk_submit_to: str


class AcceptOutcome(str, enum.Enum):
    allocated = "allocated"  # a fresh assignment from the pool
    resumed = "resumed"  # the worker's active allocation, again
    submitted = (
        "submitted"  # already submitted for this very MTurk assignment: only the hand-off is left
    )


@dataclass(frozen=True)
class Accepted:
    outcome: AcceptOutcome
    assignment_public_id: str
    class_names: list[str]
    expires_at: datetime
    # The items' PNGs in position order, read in the accept's transaction for the image cache.
    item_images: tuple[bytes, ...]

    @property
    def num_items(self) -> int:
        return len(self.item_images)


@dataclass(frozen=True)
class LabelInput:
    position: int
    label: int
    response_ms: int | None = None


@dataclass(frozen=True)
class Submitted:
    already_submitted: bool
    num_labels: int


@dataclass(frozen=True)
class StudyProgress:
    slug: str
    assignments: dict[str, int]
    allocations: dict[str, int]
    verification: dict[str, int]
    labels: int
    workers: int
    stimuli: int
    items_per_assignment: int


def _retrying(session: Session, attempt: Callable[[], T]) -> T:
    """Run `attempt` (one whole transaction) again when it loses a race on the database."""
    for remaining in range(_ATTEMPTS - 1, -1, -1):
        try:
            return attempt()
        except IntegrityError:
            session.rollback()
            if not remaining:
                raise
        except DBAPIError as error:
            session.rollback()
            code = getattr(error.orig, "sqlstate", None)
            if code not in _RETRYABLE_PGCODES or not remaining:
                raise
    raise AssertionError("unreachable")


def assignment_size_range(session: Session, study_id: int) -> tuple[int, int]:
    """The fewest and the most items any assignment of the study has.

    `items_per_assignment` is the split's target; the real sizes differ by one where it does
    not divide the images, and catch trials dealt on top add one or two.
    """
    sizes = (
        select(func.count().label("size"))
        .select_from(AssignmentItem)
        .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
        .where(Assignment.study_id == study_id)
        .group_by(AssignmentItem.assignment_id)
        .subquery()
    )
    low, high = session.execute(select(func.min(sizes.c.size), func.max(sizes.c.size))).one()
    return int(low or 0), int(high or 0)


def accept(
    *,
    session: Session,
    study_slug: str,
    worker: WorkerRef,
    mturk: MTurkContext | None,
    now: datetime,
    timeout: timedelta,
) -> Accepted:
    """Give `worker` an assignment of the study (or the one they already hold)."""
    return _retrying(
        session, lambda: _accept_once(session, study_slug, worker, mturk, now, timeout)
    )


def _accept_once(
    session: Session,
    study_slug: str,
    worker: WorkerRef,
    mturk: MTurkContext | None,
    now: datetime,
    timeout: timedelta,
) -> Accepted:
    begin_write(session)
    study = find_study(session, study_slug)
    if mturk is not None:
        _check_hit(session, study=study, mturk=mturk, worker=worker)
    _expire_overdue(session, study_id=study.id, now=now)
    worker_row = _get_or_create_worker(session, worker)
    held = session.scalar(
        select(Allocation)
        .where(Allocation.study_id == study.id, Allocation.worker_id == worker_row.id)
        .with_for_update()
    )
    if held is not None and held.status == AllocationStatus.submitted:
        if mturk is not None and held.mturk_assignment_id == mturk.assignment_id:
            result = _accepted(session, study, held, AcceptOutcome.submitted)
            session.commit()
            return result
        raise ConflictError(
            "you have already completed an assignment of this study; each person labels only one"
        )
    if held is not None and held.status == AllocationStatus.active:
        if mturk is not None and held.mturk_assignment_id != mturk.assignment_id:
            # The worker returned the HIT and accepted another of the same study: same items,
            # the new MTurk assignment carries the submission.
            _attach_mturk(held, mturk)
            record_event(
                session,
                kind="reaccepted",
                study_id=study.id,
                worker=worker.external_id,
                assignment_id=held.assignment_id,
                detail={"mturk_assignment_id": mturk.assignment_id, "hit_id": mturk.hit_id},
            )
        result = _accepted(session, study, held, AcceptOutcome.resumed)
        session.commit()
        return result
    assignment = session.scalar(
        select(Assignment)
        .where(Assignment.study_id == study.id, Assignment.status == AssignmentStatus.available)
        .order_by(Assignment.ordinal)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if assignment is None:
        raise ConflictError(
            "every assignment of this study is taken or done; thank you for your interest"
        )
    assignment.status = AssignmentStatus.allocated
    allocation = held or Allocation(study_id=study.id, worker_id=worker_row.id)
    allocation.assignment_id = assignment.id
    allocation.status = AllocationStatus.active
    allocation.allocated_at = now
    allocation.expires_at = now + timeout
    allocation.submitted_at = None
    # Lab work needs no market's confirmation; MTurk and Prolific work waits for their sync.
    allocation.verification = (
        Verification.not_applicable
        if worker.source == WorkerSource.local
        else Verification.unverified
    )
    allocation.mturk_assignment_id = allocation.hit_id = allocation.turk_submit_to = None
    if mturk is not None:
        _attach_mturk(allocation, mturk)
    session.add(allocation)
    session.flush()
    record_event(
        session,
        kind="allocated",
        study_id=study.id,
        worker=worker.external_id,
        assignment_id=assignment.id,
        detail={
            "ordinal": assignment.ordinal,
            "mturk_assignment_id": mturk.assignment_id if mturk else None,
            "hit_id": mturk.hit_id if mturk else None,
            "again_after_expiry": held is not None,
        },
    )
    result = _accepted(session, study, allocation, AcceptOutcome.allocated, assignment=assignment)
    session.commit()
    return result


def _check_hit(session: Session, *, study: Study, mturk: MTurkContext, worker: WorkerRef) -> None:
    hit_study = session.scalar(select(MTurkHit.study_id).where(MTurkHit.hit_id == mturk.hit_id))
    if hit_study != study.id:
        raise NotFoundError(f"HIT {mturk.hit_id!r} is not a HIT of study {study.slug!r}")
    owner = session.scalar(
        select(Worker.external_id)
        .join(Allocation, Allocation.worker_id == Worker.id)
        .where(Allocation.mturk_assignment_id == mturk.assignment_id)
    )
    if owner is not None and owner != worker.external_id:
        raise ForbiddenError(f"MTurk assignment {mturk.assignment_id!r} belongs to another worker")


def _attach_mturk(allocation: Allocation, mturk: MTurkContext) -> None:
    allocation.mturk_assignment_id = mturk.assignment_id
    allocation.hit_id = mturk.hit_id
    allocation.turk_submit_to = mturk.turk_submit_to


def _accepted(
    session: Session,
    study: Study,
    allocation: Allocation,
    outcome: AcceptOutcome,
    *,
    assignment: Assignment | None = None,
) -> Accepted:
    assignment = assignment or session.get_one(Assignment, allocation.assignment_id)
    images = session.scalars(
        select(Stimulus.image_png)
        .join(AssignmentItem, AssignmentItem.stimulus_id == Stimulus.id)
        .where(AssignmentItem.assignment_id == assignment.id)
        .order_by(AssignmentItem.position)
    ).all()
    return Accepted(
        outcome=outcome,
        assignment_public_id=assignment.public_id,
        class_names=list(study.class_names),
        expires_at=allocation.expires_at,
        item_images=tuple(images),
    )


def _get_or_create_worker(session: Session, worker: WorkerRef) -> Worker:
    row = session.scalar(
        select(Worker).where(
            Worker.source == worker.source, Worker.external_id == worker.external_id
        )
    )
    if row is None:
        row = Worker(source=worker.source, external_id=worker.external_id)
        session.add(row)
        session.flush()  # a concurrent twin makes this raise IntegrityError: the caller retries
    return row


def _expire_overdue(session: Session, *, study_id: int, now: datetime) -> None:
    """Expire the study's allocations past their deadline and put their assignments back."""
    overdue = session.scalars(
        select(Allocation.id)
        .where(
            Allocation.study_id == study_id,
            Allocation.status == AllocationStatus.active,
            Allocation.expires_at < now,
        )
        .order_by(Allocation.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not overdue:
        return
    released = session.scalars(
        update(Allocation)
        .where(Allocation.id.in_(overdue))
        .values(status=AllocationStatus.expired)
        .returning(Allocation.assignment_id)
    ).all()
    session.execute(
        update(Assignment)
        .where(Assignment.id.in_(released), Assignment.status == AssignmentStatus.allocated)
        .values(status=AssignmentStatus.available)
    )
    record_event(
        session,
        kind="allocations_expired",
        study_id=study_id,
        detail={"assignments": sorted(released)},
    )


# Built once: the hottest query of a study (25 per assignment); constructing it per call
# cost about as much CPU as running it.
_ITEM_IMAGE = (
    select(Stimulus.image_png)
    .join(AssignmentItem, AssignmentItem.stimulus_id == Stimulus.id)
    .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
    .where(
        Assignment.public_id == bindparam("public_id"),
        AssignmentItem.position == bindparam("position"),
        Assignment.status != AssignmentStatus.available,
    )
)


def item_image(*, session: Session, assignment_public_id: str, position: int) -> bytes:
    """The PNG of an item of an assignment someone holds (never of one still in the pool)."""
    png = session.scalar(_ITEM_IMAGE, {"public_id": assignment_public_id, "position": position})
    if png is None:
        raise NotFoundError("no such item")
    return png


def submit(
    *,
    session: Session,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    labels: Sequence[LabelInput],
    now: datetime,
) -> Submitted:
    """Store a worker's labels for their assignment, all at once; safe to retry."""
    return _retrying(
        session,
        lambda: _submit_once(
            session, assignment_public_id, worker, mturk_assignment_id, labels, now
        ),
    )


def _submit_once(
    session: Session,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    labels: Sequence[LabelInput],
    now: datetime,
) -> Submitted:
    begin_write(session)
    assignment = session.scalar(
        select(Assignment).where(Assignment.public_id == assignment_public_id).with_for_update()
    )
    if assignment is None:
        raise NotFoundError("no such assignment")
    allocation = session.scalar(
        select(Allocation)
        .join(Worker, Worker.id == Allocation.worker_id)
        .where(
            Allocation.study_id == assignment.study_id,
            Worker.source == worker.source,
            Worker.external_id == worker.external_id,
        )
        .with_for_update(of=Allocation)
    )
    if allocation is None or allocation.assignment_id != assignment.id:
        raise ForbiddenError("this assignment is not allocated to you")
    if allocation.mturk_assignment_id != mturk_assignment_id:
        raise ForbiddenError(
            "the MTurk assignmentId does not match the one this assignment was accepted with"
        )
    items = session.execute(
        select(AssignmentItem.position, AssignmentItem.stimulus_id).where(
            AssignmentItem.assignment_id == assignment.id
        )
    ).all()
    stimulus_at = dict(items)
    num_classes = session.scalar(select(Study.num_classes).where(Study.id == assignment.study_id))
    _validate_labels(labels, positions=set(stimulus_at), num_classes=int(num_classes or 0))
    if allocation.status == AllocationStatus.submitted:
        return _resubmission(session, allocation=allocation, labels=labels, worker=worker)
    if allocation.status == AllocationStatus.expired:
        if assignment.status != AssignmentStatus.available:
            raise ConflictError(
                "your time for this assignment ran out and it was given to someone else"
            )
        assignment.status = AssignmentStatus.allocated  # late, but nobody else has it: take it
    session.execute(
        insert(Label),
        [
            {
                "allocation_id": allocation.id,
                "assignment_id": assignment.id,
                "stimulus_id": stimulus_at[item.position],
                "worker_id": allocation.worker_id,
                "position": item.position,
                "label": item.label,
                "response_ms": item.response_ms,
            }
            for item in labels
        ],
    )
    late = allocation.status == AllocationStatus.expired
    allocation.status = AllocationStatus.submitted
    allocation.submitted_at = now
    assignment.status = AssignmentStatus.submitted
    record_event(
        session,
        kind="submitted",
        study_id=assignment.study_id,
        worker=worker.external_id,
        assignment_id=assignment.id,
        detail={
            "labels": len(labels),
            "mturk_assignment_id": mturk_assignment_id,
            "after_expiry": late,
        },
    )
    session.commit()
    return Submitted(already_submitted=False, num_labels=len(labels))


def _validate_labels(
    labels: Sequence[LabelInput], *, positions: set[int], num_classes: int
) -> None:
    given = [item.position for item in labels]
    duplicated = sorted({p for p in given if given.count(p) > 1})
    missing, extra = sorted(positions - set(given)), sorted(set(given) - positions)
    problems = []
    if missing:
        problems.append(f"missing items {missing}")
    if extra:
        problems.append(f"items {extra} are not in this assignment")
    if duplicated:
        problems.append(f"items {duplicated} labelled more than once")
    outside = sorted({item.label for item in labels if not 0 <= item.label < num_classes})
    if outside:
        problems.append(f"labels {outside} are outside the classes 0..{num_classes - 1}")
    if problems:
        raise InvalidInputError("; ".join(problems))


def _resubmission(
    session: Session, *, allocation: Allocation, labels: Sequence[LabelInput], worker: WorkerRef
) -> Submitted:
    stored = dict(
        session.execute(
            select(Label.position, Label.label).where(Label.allocation_id == allocation.id)
        ).all()
    )
    if stored == {item.position: item.label for item in labels}:
        session.rollback()
        return Submitted(already_submitted=True, num_labels=len(stored))
    raise ConflictError("this assignment was already submitted; its labels cannot be changed")


def study_progress(*, session: Session, study_slug: str) -> StudyProgress:
    study = find_study(session, study_slug)

    def counts(column: Any, *where: Any) -> dict[str, int]:
        rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
        return {getattr(key, "value", key): int(n) for key, n in rows}

    assignments = {s.value: 0 for s in AssignmentStatus} | counts(
        Assignment.status, Assignment.study_id == study.id
    )
    allocations = {s.value: 0 for s in AllocationStatus} | counts(
        Allocation.status, Allocation.study_id == study.id
    )
    verification = counts(
        Allocation.verification,
        Allocation.study_id == study.id,
        Allocation.status == AllocationStatus.submitted,
    )
    labels = session.scalar(
        select(func.count())
        .select_from(Label)
        .join(Assignment)
        .where(Assignment.study_id == study.id)
    )
    workers = session.scalar(
        select(func.count()).select_from(Allocation).where(Allocation.study_id == study.id)
    )
    stimuli = session.scalar(
        select(func.count()).select_from(Stimulus).where(Stimulus.study_id == study.id)
    )
    return StudyProgress(
        slug=study.slug,
        assignments=assignments,
        allocations=allocations,
        verification=verification,
        labels=int(labels or 0),
        workers=int(workers or 0),
        stimuli=int(stimuli or 0),
        items_per_assignment=study.items_per_assignment,
    )
