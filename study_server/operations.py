"""The study's reusable database operations: accept, serve an item, save a label as the
person goes, submit, progress.

Each write operation is one transaction that it opens itself (`begin_write`), so the rules
of the study hold under concurrency on both backends. Which images a claim gets, how long a
hold lasts and what the limits are is decided in `study_server.allocation` (the rules are
listed there); here:

- accepting again returns the hold the worker already has, with the labels saved so far
  (a reload resumes); a worker who submitted gets no second assignment of the study;
- labels are saved one by one as they are given (`save_label`), for resuming only; the
  submission stores all labels in one transaction or none, and removes the saved ones;
  sending the same labels again answers as the first time did (retries are safe),
  different labels are refused;
- a late submission (after the hold expired) is still taken if nobody else has the
  assignment by then;
- an accept carries the SHA-256 of the consent text the person agreed to (allocation rule 9):
  the allocation keeps that version and the time; the submission is judged against the
  study's attention policy (`study_server.attention`) and given the study's debrief, both
  recorded on the allocation in the submission's transaction.

On PostgreSQL the rows that decide are locked (`FOR UPDATE`); on SQLite, `BEGIN IMMEDIATE`
serialises writers. Unique constraints in the schema are the last line of defence; a
transaction that loses a race on them is retried from the start.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    Integer,
    Select,
    String,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from study_server import allocation as rules
from study_server import attention
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Assignment,
    AssignmentItem,
    AssignmentStatus,
    Label,
    LabelDraft,
    ProtocolText,
    Stimulus,
    StimulusKind,
    Study,
    TextKind,
    UTCDateTime,
    Verification,
    Worker,
    WorkerSource,
)
from study_server.db.rendered import Call, Database, defer, dialect_name, execute_together
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event, study_columns
from study_server.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from study_server.invitations import LabInvite
from study_server.protocol_texts import (
    TEXT_COLUMNS,
    ShownText,
    checked_consent,
    required_text,
    text_columns_question,
)

T = TypeVar("T")
# PostgreSQL's "serialization failure" and "deadlock detected": safe to retry from the start.
_RETRYABLE_PGCODES = {"40001", "40P01"}
_ATTEMPTS = 4


@dataclass(frozen=True)
class WorkerRef:
    source: WorkerSource
    external_id: str

    @classmethod
    def of_invite(cls, invite: LabInvite) -> WorkerRef:
        return cls(WorkerSource.local, invite.worker_id)


@dataclass(frozen=True)
class MTurkContext:
    """What MTurk appended to the HIT page's URL for an accepted HIT."""

    assignment_id: str
    hit_id: str
    turk_submit_to: str


@dataclass(frozen=True)
class Claimant:
    """Who accepts: the worker, MTurk's ids (None for a lab invitation), and the client's
    address key for the per-address limit (None where no limit applies)."""

    worker: WorkerRef
    mturk: MTurkContext | None = None
    address: str | None = None


class AcceptOutcome(str, enum.Enum):
    allocated = "allocated"  # a fresh assignment from the pool
    shared = "shared"  # the images of a claim that cannot all be real (allocation rule 5)
    resumed = "resumed"  # the worker's active allocation, again
    submitted = (
        "submitted"  # already submitted for this very MTurk assignment: only the hand-off is left
    )


@dataclass(frozen=True)
class LabelInput:
    position: int
    label: int
    response_ms: int | None = None


@dataclass(frozen=True)
class Accepted:
    outcome: AcceptOutcome
    assignment_public_id: str
    class_names: list[str]
    expires_at: datetime
    # The items' PNGs in position order, read in the accept's transaction for the image cache.
    item_images: tuple[bytes, ...]
    # The labels saved so far (a reload resumes after them).
    saved: tuple[LabelInput, ...] = field(default_factory=tuple)
    # With the `submitted` outcome: the debrief given with the labels (the page shows it again).
    debrief: ShownText | None = None

    @property
    def num_items(self) -> int:
        return len(self.item_images)


@dataclass(frozen=True)
class Submitted:
    already_submitted: bool
    num_labels: int
    # The debrief given with the stored labels: the page shows it before the hand-off.
    debrief: ShownText | None = None


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
    # Submissions by attention outcome ("not judged": stored before the protocol existed).
    attention: dict[str, int] = field(default_factory=dict)
    experiment: str | None = None


def _retrying(session: Database, attempt: Callable[[], T]) -> T:
    """Run `attempt` (one whole transaction) again when it loses a race on the database
    (through SQLAlchemy, or on a bare psycopg connection)."""
    for remaining in range(_ATTEMPTS - 1, -1, -1):
        try:
            return attempt()
        except (IntegrityError, psycopg.IntegrityError):
            session.rollback()
            if not remaining:
                raise
        except (DBAPIError, psycopg.Error) as error:
            session.rollback()
            code = getattr(getattr(error, "orig", error), "sqlstate", None)
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
    session: Database,
    study_slug: str,
    claimant: Claimant,
    consent_sha256: str,
    now: datetime,
    policy: rules.AllocationPolicy,
    invite: LabInvite | None = None,
) -> Accepted:
    """Give the claimant an assignment of the study (or the one they already hold), once they
    agreed to its current consent text (`consent_sha256`, what the page showed them).

    `session`: a Session, or a bare driver connection (`rendered.DriverStatements`): every
    statement is a Core one. A lab claim needs `invite`, the invitation its code names
    (`invitations.find_invite`).
    """
    return _retrying(
        session,
        lambda: _accept_once(session, study_slug, claimant, consent_sha256, now, policy, invite),
    )


def _accept_once(
    session: Database,
    study_slug: str,
    claimant: Claimant,
    consent_sha256: str,
    now: datetime,
    policy: rules.AllocationPolicy,
    invite: LabInvite | None,
) -> Accepted:
    begin_write(session)
    study = study_columns(session, study_slug)
    worker, mturk = claimant.worker, claimant.mturk
    lab = worker.source == WorkerSource.local
    if lab and (invite is None or not invite.opens(study.id, study.experiment_id)):
        raise ForbiddenError("this invitation code is not one of this study")  # nothing locked
    # Everything the checks below read, in one round trip on PostgreSQL, the locks taken in
    # this order: the HIT's row (claims of one HIT take turns, so what it drew is read after
    # it), the overdue holds with their assignments, the person's row (their claims take
    # turns), then their hold. A claim refused below (its consent text replaced, a HIT of
    # another study) has held them for that round trip, and rolls back.
    of_mturk = (
        [
            rules.hit_question(mturk.hit_id),
            rules.drawn_question(study_id=study.id, hit_id=mturk.hit_id, now=now),
            _owner_question(mturk),
        ]
        if mturk
        else []
    )
    address = rules.address_question(
        study_id=study.id, address=claimant.address, lab=lab, now=now, policy=policy
    )
    consent_text, *answers = execute_together(
        session,
        [
            text_columns_question(study_id=study.id, kind=TextKind.consent),
            *of_mturk,
            rules.overdue_question(study_id=study.id, now=now),
            _worker_question(session, worker),
            _persons_allocation_question(study.id, worker),
            *([address] if address else []),
        ],
    )
    mturk_answers, answers = answers[: len(of_mturk)], answers[len(of_mturk) :]
    overdue, worker_row, held_row, *address_answer = answers
    consent = checked_consent(
        session, consent_text.first(), study_id=study.id, sha256=consent_sha256
    )
    hit, drawn = None, None
    if mturk is not None:
        hit_row, drawn_rows, owner = mturk_answers
        hit = rules.checked_hit(
            hit_row.first(), study_id=study.id, study_slug=study.slug, hit_id=mturk.hit_id
        )
        drawn = drawn_rows.scalars().all()
        _check_mturk_assignment(owner.scalar(), mturk=mturk, worker=worker)
    expired = overdue.scalars().all()
    rules.expire(session, study_id=study.id, overdue=expired)
    worker_id = worker_row.scalar_one()
    held = held_row.first()
    status = None if held is None else held.status
    if held is not None and held.id in expired:  # read before `expire` ended it
        status = AllocationStatus.expired
    if held is not None and status == AllocationStatus.submitted:
        if mturk is not None and held.mturk_assignment_id == mturk.assignment_id:
            return _accepted(session, study, held, AcceptOutcome.submitted)
        if mturk is None:
            raise ConflictError(
                "this invitation code has already been used to complete the study; thank you"
            )
        raise ConflictError(
            "you have already completed an assignment of this study; each person labels only one"
        )
    if held is not None and status == AllocationStatus.active:
        changes: dict[str, Any] = {}
        if held.consent_sha256 != consent.sha256:
            changes |= _consent_values(consent, now)
            record_event(
                session,
                kind="consent_renewed",
                study_id=study.id,
                assignment_id=held.assignment_id,
                detail={"allocation": held.id, "consent_version": consent.version},
            )
        if mturk is not None and held.mturk_assignment_id != mturk.assignment_id:
            # The worker returned the HIT and accepted another of the same study: same items,
            # the new MTurk assignment carries the submission.
            changes |= _mturk_values(mturk)
            record_event(
                session,
                kind="reaccepted",
                study_id=study.id,
                worker=worker.external_id,
                assignment_id=held.assignment_id,
                detail={"mturk_assignment_id": mturk.assignment_id, "hit_id": mturk.hit_id},
            )
        if changes:
            defer(session, _allocation_update(*changes), {"allocation_id": held.id, **changes})
        return _accepted(session, study, held, AcceptOutcome.resumed)
    rules.refuse_sibling_participant(
        session,
        study_id=study.id,
        experiment_id=study.experiment_id,
        source=worker.source,
        external_id=worker.external_id,
    )
    for holds in address_answer:
        rules.checked_address(holds.scalars().all(), lab=lab, now=now, policy=policy)
    choice = rules.choose_assignment(
        session, study_id=study.id, drawn=drawn, now=now, policy=policy
    )
    assignment = choice.assignment
    # The writes go with the next round trip, reading the images (`rendered.defer`).
    if assignment.status == AssignmentStatus.available:
        defer(
            session,
            _SET_ONE_ASSIGNMENT_STATUS,
            {"assignment_id": assignment.id, "status": AssignmentStatus.allocated},
        )
    hold = {
        "assignment_id": assignment.id,
        "status": AllocationStatus.active,
        "allocated_at": now,
        "expires_at": rules.hold_deadline(hit, now=now, policy=policy),
        "submitted_at": None,
        # Lab work counts by its invitation; MTurk and Prolific work waits for their sync.
        "verification": (
            Verification.invited if worker.source == WorkerSource.local else Verification.unverified
        ),
        "verification_note": None,
        "source_address": claimant.address,
        **_mturk_values(mturk),
        **_consent_values(consent, now),
    }
    if held is None:
        defer(session, _INSERT_ALLOCATION, {"study_id": study.id, "worker_id": worker_id, **hold})
    else:  # an expired hold of this person's, renewed
        defer(session, _allocation_update(*hold), {"allocation_id": held.id, **hold})
        # labels saved under the earlier hold are not for this one
        defer(session, _DELETE_DRAFTS, {"allocation_id": held.id})
    outcome = AcceptOutcome.shared if choice.shared else AcceptOutcome.allocated
    record_event(
        session,
        kind=outcome.value,
        study_id=study.id,
        worker=worker.external_id,
        assignment_id=assignment.id,
        detail={
            "ordinal": assignment.ordinal,
            "mturk_assignment_id": mturk.assignment_id if mturk else None,
            "hit_id": mturk.hit_id if mturk else None,
            "again_after_expiry": held is not None,
            "expires_at": hold["expires_at"].isoformat(),
            "consent_version": consent.version,
        },
    )
    return _accepted(
        session, study, _Hold(assignment.id, assignment.public_id, hold["expires_at"]), outcome
    )


def _consent_values(consent: Any, now: datetime) -> dict[str, Any]:
    """Rule 9: what the person agreed to, and when. Agreeing again to a newer version on a
    reload (the text changed meanwhile) is recorded too (`consent_renewed`)."""
    return {"consent_text_id": consent.id, "consent_sha256": consent.sha256, "consented_at": now}


def _mturk_values(mturk: MTurkContext | None) -> dict[str, Any]:
    """The MTurk identifiers a hold carries (none for a lab or Prolific claim)."""
    return {
        "mturk_assignment_id": mturk.assignment_id if mturk else None,
        "hit_id": mturk.hit_id if mturk else None,
        "turk_submit_to": mturk.turk_submit_to if mturk else None,
    }


def given_debrief(session: Database, allocation: Any) -> ShownText | None:
    """The debrief recorded with a submission (None before 0005's protocol existed)."""
    question = _debrief_question(allocation)
    return None if question is None else ShownText.of(session.execute(*question).one())


def _debrief_question(allocation: Any) -> Call | None:
    """The text of the debrief recorded with a submission; None: there is none."""
    if allocation.debrief_text_id is None:
        return None
    return _TEXT_BY_ID, {"id": allocation.debrief_text_id}


def _owner_question(mturk: MTurkContext) -> Call:
    """Who holds the MTurk assignment already, if anyone (`_check_mturk_assignment`)."""
    return _ASSIGNMENT_OWNER, {"mturk_assignment_id": mturk.assignment_id}


def _check_mturk_assignment(owner: str | None, *, mturk: MTurkContext, worker: WorkerRef) -> None:
    if owner is not None and owner != worker.external_id:
        raise ForbiddenError(f"MTurk assignment {mturk.assignment_id!r} belongs to another worker")


@dataclass(frozen=True)
class _Hold:
    """What an accept answers from, of a hold it made. A row of `_PERSONS_ALLOCATION` has
    the same, and the allocation's id and debrief, which only the answer to a resumed or a
    submitted hold reads."""

    assignment_id: int
    public_id: str
    expires_at: datetime


def _accepted(session: Database, study: Any, hold: Any, outcome: AcceptOutcome) -> Accepted:
    """The answer to an accept, read with the commit (and the writes before it) in one round
    trip on PostgreSQL."""
    asked: list[Call] = [(_ITEM_IMAGES, {"assignment_id": hold.assignment_id})]
    if outcome == AcceptOutcome.resumed:
        asked.append((_SAVED_DRAFTS, {"allocation_id": hold.id}))
    debrief_question = _debrief_question(hold) if outcome == AcceptOutcome.submitted else None
    if debrief_question is not None:
        asked.append(debrief_question)
    images, *more = execute_together(session, asked, commit=True)
    saved = more[0] if outcome == AcceptOutcome.resumed else ()
    debrief = more[0].one() if debrief_question is not None else None
    return Accepted(
        outcome=outcome,
        assignment_public_id=hold.public_id,
        class_names=list(study.class_names),
        expires_at=hold.expires_at,
        item_images=tuple(images.scalars()),
        saved=tuple(LabelInput(*row) for row in saved),
        debrief=None if debrief is None else ShownText.of(debrief),
    )


def _worker_question(session: Database, worker: WorkerRef) -> Call:
    """The person's row id, the row created if need be and locked: their claims take turns
    (allocation rule 8).

    One upsert: ON CONFLICT DO UPDATE locks the existing row as FOR UPDATE would (on SQLite
    the write lock is already held), and a concurrent twin's insert waits for it."""
    statement = _worker_upsert(dialect_name(session))
    return statement, {"source": worker.source, "external_id": worker.external_id}


@functools.cache
def _worker_upsert(dialect: str) -> Any:
    """Built once per dialect, on the table (an ORM insert would go through the ORM's bulk
    machinery, which cost more than the statement)."""
    table = Worker.__table__
    statement = _upsert(dialect)(table).values(
        source=bindparam("source", type_=table.c.source.type),
        external_id=bindparam("external_id", type_=table.c.external_id.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.source, table.c.external_id],
        set_={"external_id": statement.excluded.external_id},
    ).returning(table.c.id)


def _binds(table: Any, names: Iterable[str]) -> dict[str, Any]:
    """A bound parameter per column, of the column's type: statements that name every column
    they write (a driver connection fills in no Python-side default)."""
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


_allocations = Allocation.__table__


@functools.cache
def _allocation_update(*columns: str) -> Any:
    """An UPDATE of these columns of one allocation (`allocation_id`), built once per set."""
    return (
        update(_allocations)
        .where(_allocations.c.id == bindparam("allocation_id"))
        .values(_binds(_allocations, columns))
    )


# Built once, like every statement of accept and submit: constructing one per call cost more
# CPU than running it (0.32-0.42 ms against 0.12-0.18 ms a query on PostgreSQL).
# Its id is not read back (`inline()`: no RETURNING): the answer to an accept needs none.
_INSERT_ALLOCATION = (
    insert(_allocations)
    .inline()
    .values(
        _binds(
            _allocations,
            [
                "study_id",
                "worker_id",
                "assignment_id",
                "status",
                "allocated_at",
                "expires_at",
                "submitted_at",
                "verification",
                "verification_note",
                "source_address",
                "mturk_assignment_id",
                "hit_id",
                "turk_submit_to",
                "consent_text_id",
                "consent_sha256",
                "consented_at",
            ],
        )
    )
)
_assignments = Assignment.__table__
_SET_ONE_ASSIGNMENT_STATUS = (
    update(_assignments)
    .where(_assignments.c.id == bindparam("assignment_id"))
    .values(_binds(_assignments, ["status"]))
)
_SUBMIT_ALLOCATION = _allocation_update(
    "status",
    "submitted_at",
    "source_address",
    "attention",
    "attention_detail",
    "attention_policy_id",
    "debrief_text_id",
    "debriefed_at",
)
_labels = Label.__table__
# `inline()`: compiled once for PostgreSQL, an INSERT would return its keys, which nobody reads.
_INSERT_LABELS = (
    insert(_labels)
    .inline()
    .values(
        _binds(
            _labels,
            [
                "allocation_id",
                "assignment_id",
                "stimulus_id",
                "worker_id",
                "position",
                "label",
                "response_ms",
            ],
        )
    )
)
_DELETE_DRAFTS = delete(LabelDraft.__table__).where(
    LabelDraft.allocation_id == bindparam("allocation_id")
)
_SAVED_DRAFTS = (
    select(LabelDraft.position, LabelDraft.label, LabelDraft.response_ms)
    .where(LabelDraft.allocation_id == bindparam("allocation_id"))
    .order_by(LabelDraft.position)
)
_STORED_LABELS = select(Label.position, Label.label).where(
    Label.allocation_id == bindparam("allocation_id")
)
_TEXT_BY_ID = select(*TEXT_COLUMNS).where(ProtocolText.id == bindparam("id"))
_ASSIGNMENT_OWNER = (
    select(Worker.external_id)
    .join(Allocation, Allocation.worker_id == Worker.id)
    .where(Allocation.mturk_assignment_id == bindparam("mturk_assignment_id"))
)
_ITEM_IMAGES = (
    select(Stimulus.image_png)
    .join(AssignmentItem, AssignmentItem.stimulus_id == Stimulus.id)
    .where(AssignmentItem.assignment_id == bindparam("assignment_id"))
    .order_by(AssignmentItem.position)
)
_ASSIGNMENT_LOCKED = (
    select(Assignment.id, Assignment.study_id, Assignment.status)
    .where(Assignment.public_id == bindparam("public_id"))
    .with_for_update()
)
# A person's allocation in a study (what the accept and the submission read of it), locked.
_PERSONS_ALLOCATION = (
    select(
        Allocation.id,
        Allocation.assignment_id,
        Assignment.public_id,
        Allocation.status,
        Allocation.mturk_assignment_id,
        Allocation.worker_id,
        Allocation.consent_sha256,
        Allocation.expires_at,
        Allocation.debrief_text_id,
    )
    .join(Assignment, Assignment.id == Allocation.assignment_id)
    .join(Worker, Worker.id == Allocation.worker_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Worker.source == bindparam("source"),
        Worker.external_id == bindparam("external_id"),
    )
    .with_for_update(of=Allocation)
)
# The assignment's items, each with what judging a submission needs (its stimulus, catch
# trial or not, the true class) and the study's number of classes: one query.
_SUBMISSION_ITEMS = (
    select(
        AssignmentItem.position,
        AssignmentItem.stimulus_id,
        Stimulus.kind,
        Stimulus.original_label,
        Study.num_classes,
    )
    .join(Stimulus, Stimulus.id == AssignmentItem.stimulus_id)
    .join(Study, Study.id == Stimulus.study_id)
    .where(AssignmentItem.assignment_id == bindparam("assignment_id"))
)
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
    session: Database,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    labels: Sequence[LabelInput],
    now: datetime,
) -> Submitted:
    """Store a worker's labels for their assignment, all at once; safe to retry. `session`: a
    Session, or a bare driver connection (`rendered.DriverStatements`)."""
    return _retrying(
        session,
        lambda: _submit_once(
            session, assignment_public_id, worker, mturk_assignment_id, labels, now
        ),
    )


def _own_allocation(
    session: Database, assignment_public_id: str, worker: WorkerRef, mturk_assignment_id: str | None
) -> tuple[Any, Any]:
    """The assignment and the worker's allocation of it (rows, both locked), or why not."""
    assignment = _locked_assignment(session, assignment_public_id)
    allocation = session.execute(*_persons_allocation_question(assignment.study_id, worker))
    return assignment, _checked_allocation(allocation.first(), assignment, mturk_assignment_id)


def _locked_assignment(session: Database, assignment_public_id: str) -> Any:
    assignment = session.execute(_ASSIGNMENT_LOCKED, {"public_id": assignment_public_id}).first()
    if assignment is None:
        raise NotFoundError("no such assignment")
    return assignment


def _persons_allocation_question(study_id: int, worker: WorkerRef) -> Call:
    """The person's allocation in the study, locked."""
    values = {"study_id": study_id, "source": worker.source, "external_id": worker.external_id}
    return _PERSONS_ALLOCATION, values


def _checked_allocation(allocation: Any, assignment: Any, mturk_assignment_id: str | None) -> Any:
    """The answer to `_persons_allocation_question` for the assignment's study, if it is
    the person's hold of this assignment, under the MTurk assignment it was accepted with."""
    if allocation is None or allocation.assignment_id != assignment.id:
        raise ForbiddenError("this assignment is not allocated to you")
    if allocation.mturk_assignment_id != mturk_assignment_id:
        raise ForbiddenError(
            "the MTurk assignmentId does not match the one this assignment was accepted with"
        )
    return allocation


def _submit_once(
    session: Database,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    labels: Sequence[LabelInput],
    now: datetime,
) -> Submitted:
    begin_write(session)
    assignment = _locked_assignment(session, assignment_public_id)
    # Everything else the submission reads, in one round trip on PostgreSQL.
    held, items_rows, policy_row, debrief_row = execute_together(
        session,
        [
            _persons_allocation_question(assignment.study_id, worker),
            (_SUBMISSION_ITEMS, {"assignment_id": assignment.id}),
            attention.policy_question(study_id=assignment.study_id),
            text_columns_question(study_id=assignment.study_id, kind=TextKind.debrief),
        ],
    )
    allocation = _checked_allocation(held.first(), assignment, mturk_assignment_id)
    items = items_rows.all()
    stimulus_at = {item.position: item.stimulus_id for item in items}
    num_classes = items[0].num_classes if items else 0
    _validate_labels(labels, positions=set(stimulus_at), num_classes=num_classes)
    if allocation.status == AllocationStatus.submitted:
        return _resubmission(session, allocation=allocation, labels=labels, worker=worker)
    if allocation.status == AllocationStatus.expired and assignment.status != (
        AssignmentStatus.available
    ):
        raise ConflictError(
            "your time for this assignment ran out and it was given to someone else"
        )
    policy = policy_row.first()
    debrief = required_text(debrief_row.first(), TextKind.debrief)
    # The writes go with the commit, in one round trip on PostgreSQL (`rendered.defer`).
    defer(
        session,
        _INSERT_LABELS,
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
    defer(session, _DELETE_DRAFTS, {"allocation_id": allocation.id})
    late = allocation.status == AllocationStatus.expired  # late, but nobody else has it: take it
    judged, judged_detail, judged_by = attention.verdict(
        labels=[(item.position, item.label, item.response_ms) for item in labels],
        policy=policy,
        catch_truth={
            item.position: item.original_label for item in items if item.kind == StimulusKind.catch
        },
    )
    defer(
        session,
        _SUBMIT_ALLOCATION,
        {
            "allocation_id": allocation.id,
            "status": AllocationStatus.submitted,
            "submitted_at": now,
            "source_address": None,
            "attention": judged,
            "attention_detail": judged_detail,
            "attention_policy_id": judged_by,
            "debrief_text_id": debrief.id,
            "debriefed_at": now,
        },
    )
    defer(
        session,
        _SET_ONE_ASSIGNMENT_STATUS,
        {"assignment_id": assignment.id, "status": AssignmentStatus.submitted},
    )
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
            "attention": judged.value,
            "debrief_version": debrief.version,
        },
    )
    session.commit()
    return Submitted(already_submitted=False, num_labels=len(labels), debrief=ShownText.of(debrief))


def draft_values(
    *,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    item: LabelInput,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of `save_draft_statement` for one label."""
    return {
        "public_id": assignment_public_id,
        "source": worker.source.value,
        "external_id": worker.external_id,
        "mturk_assignment_id": mturk_assignment_id,
        "position": item.position,
        "label": item.label,
        "response_ms": item.response_ms,
        "now": now,
    }


def save_label(
    *,
    session: Session,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    item: LabelInput,
    now: datetime,
) -> None:
    """Keep one label as the person gives it (a reload resumes after it). Only while the hold
    is active; the submission, not this, is what the study stores.

    The page sends one of these per image, so it is the server's most frequent write. The
    common case is one statement (`save_draft_statement`); only when it writes nothing does
    the detailed path run, to say why (`explain_unsaved_label`)."""
    values = draft_values(
        assignment_public_id=assignment_public_id,
        worker=worker,
        mturk_assignment_id=mturk_assignment_id,
        item=item,
        now=now,
    )
    begin_write(session)  # SQLite: take the write lock first (session.py says why)
    written = save_draft(session.connection(), values)
    session.commit()
    if not written:
        explain_unsaved_label(
            session=session,
            assignment_public_id=assignment_public_id,
            worker=worker,
            mturk_assignment_id=mturk_assignment_id,
            item=item,
            now=now,
        )


def _upsert(dialect: str) -> Callable[..., Any]:
    """The dialect's INSERT, the one that has ON CONFLICT (SQLite or PostgreSQL)."""
    return sqlite_insert if dialect == "sqlite" else postgresql_insert


def save_draft(connection: Connection, values: dict[str, Any]) -> bool:
    """The common case of `save_label`, one statement; False when a rule refused it (then
    `explain_unsaved_label` says which). The caller commits."""
    statement = save_draft_statement(connection.dialect.name)
    return connection.execute(statement, values).first() is not None


def explain_unsaved_label(
    *,
    session: Session,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    item: LabelInput,
    now: datetime,
) -> None:
    """The rules of `save_draft_statement` checked one by one: raises the refusal that
    applies (or saves the label, if the state changed in between)."""
    _retrying(
        session,
        lambda: _save_label_once(
            session, assignment_public_id, worker, mturk_assignment_id, item, now
        ),
    )


# What a label's save is given (`draft_values`); a batch gives one array of each.
_DRAFT_INPUTS = {
    "public_id": String(),
    "source": String(),
    "external_id": String(),
    "mturk_assignment_id": String(),
    "position": Integer(),
    "label": Integer(),
    "response_ms": Integer(),
    "now": UTCDateTime(),
}
_DRAFT_COLUMNS = ["allocation_id", "position", "label", "response_ms", "saved_at"]


def _draft_rows(given: Mapping[str, Any], start: Any = Assignment) -> Select[Any]:
    """The draft row a label's save writes, if every rule holds: the assignment's hold is
    active and the person's (and, for MTurk, on the MTurk assignment they name), the position
    is one of the assignment's items, the label one of the study's classes. `given` maps each
    of `_DRAFT_INPUTS` to an expression: a bound parameter, or a column of a batch (then
    `start` is the batch joined to its assignments: a join may only name what precedes it)."""
    now, position, label = given["now"], given["position"], given["label"]
    return (
        select(
            Allocation.id.label("allocation_id"),
            position.label("position"),
            label.label("label"),
            given["response_ms"].label("response_ms"),
            now.label("saved_at"),
        )
        .select_from(start)
        .join(Allocation, Allocation.assignment_id == Assignment.id)
        .join(Worker, Worker.id == Allocation.worker_id)
        .join(Study, Study.id == Assignment.study_id)
        .join(
            AssignmentItem,
            (AssignmentItem.assignment_id == Assignment.id) & (AssignmentItem.position == position),
        )
        .where(
            Assignment.public_id == given["public_id"],
            Allocation.study_id == Assignment.study_id,
            Worker.source == given["source"],
            Worker.external_id == given["external_id"],
            Allocation.status == AllocationStatus.active,
            Allocation.expires_at >= now,
            Allocation.mturk_assignment_id.is_not_distinct_from(given["mturk_assignment_id"]),
            label >= 0,
            label < Study.num_classes,
        )
    )


def _upserting(dialect: str, rows: Any) -> Any:
    """INSERT INTO label_drafts `rows` ON CONFLICT (allocation_id, position) DO UPDATE: no
    lock (a draft is the caller's own row; a hold that ends meanwhile just leaves a draft
    nobody reads)."""
    statement = _upsert(dialect)(LabelDraft.__table__).from_select(_DRAFT_COLUMNS, rows)
    return statement.on_conflict_do_update(
        index_elements=["allocation_id", "position"],
        set_={
            name: getattr(statement.excluded, name) for name in ("label", "response_ms", "saved_at")
        },
    )


@functools.cache
def save_draft_statement(dialect: str) -> Any:
    """One label's save, one round trip: a row back when it was saved."""
    rows = _draft_rows({name: bindparam(name, type_=t) for name, t in _DRAFT_INPUTS.items()})
    return _upserting(dialect, rows).returning(LabelDraft.__table__.c.allocation_id)


@functools.cache
def save_drafts_statement() -> Any:
    """Many labels' saves in one round trip (PostgreSQL, `loop_statements.LoopBatch`): each
    input is an array, one element per label, `index` numbering them in the order they came;
    the rows back are the indexes of the labels saved. The rules are `_draft_rows`, as for
    one label, applied to each. Where several that passed are for one draft (a correction
    sent before the first was saved), the last one is written, as if each had run in turn:
    an upsert may not touch a row twice."""
    arrays = [bindparam("index", type_=ARRAY(Integer()))] + [
        bindparam(name, type_=ARRAY(t)) for name, t in _DRAFT_INPUTS.items()
    ]
    given = (
        func.unnest(*arrays)
        .table_valued(column("index", Integer()), *(column(n, t) for n, t in _DRAFT_INPUTS.items()))
        .render_derived(name="given")
    )
    by_assignment = given.join(Assignment, Assignment.public_id == given.c.public_id)
    rows = (
        _draft_rows({name: given.c[name] for name in _DRAFT_INPUTS}, by_assignment)
        .add_columns(given.c.index)
        .cte("draft_rows")
    )
    later = rows.alias("later")
    last_per_draft = select(*(rows.c[name] for name in _DRAFT_COLUMNS)).where(
        ~exists().where(
            later.c.allocation_id == rows.c.allocation_id,
            later.c.position == rows.c.position,
            later.c.index > rows.c.index,
        )
    )
    saved = (
        _upserting("postgresql", last_per_draft)
        .returning(LabelDraft.__table__.c.allocation_id, LabelDraft.__table__.c.position)
        .cte("saved")
    )
    return select(rows.c.index).join(
        saved,
        (saved.c.allocation_id == rows.c.allocation_id) & (saved.c.position == rows.c.position),
    )


def _save_label_once(
    session: Session,
    assignment_public_id: str,
    worker: WorkerRef,
    mturk_assignment_id: str | None,
    item: LabelInput,
    now: datetime,
) -> None:
    begin_write(session)
    assignment, allocation = _own_allocation(
        session, assignment_public_id, worker, mturk_assignment_id
    )
    if allocation.status == AllocationStatus.submitted:
        raise ConflictError("this assignment was already submitted")
    if allocation.status == AllocationStatus.expired or allocation.expires_at < now:
        raise ConflictError(
            "your time for this assignment ran out; submit now to keep your answers if "
            "nobody else has taken it"
        )
    exists = session.scalar(
        select(AssignmentItem.position).where(
            AssignmentItem.assignment_id == assignment.id,
            AssignmentItem.position == item.position,
        )
    )
    if exists is None:
        raise InvalidInputError(f"item {item.position} is not in this assignment")
    num_classes = int(
        session.scalar(select(Study.num_classes).where(Study.id == assignment.study_id)) or 0
    )
    if not 0 <= item.label < num_classes:
        raise InvalidInputError(f"label {item.label} is outside the classes 0..{num_classes - 1}")
    draft = session.scalar(
        select(LabelDraft).where(
            LabelDraft.allocation_id == allocation.id, LabelDraft.position == item.position
        )
    )
    if draft is None:
        draft = LabelDraft(allocation_id=allocation.id, position=item.position)
        session.add(draft)
    draft.label, draft.response_ms, draft.saved_at = item.label, item.response_ms, now
    session.commit()


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
    session: Database, *, allocation: Any, labels: Sequence[LabelInput], worker: WorkerRef
) -> Submitted:
    stored = dict(session.execute(_STORED_LABELS, {"allocation_id": allocation.id}).all())
    if stored == {item.position: item.label for item in labels}:
        debrief = given_debrief(session, allocation)
        session.rollback()
        return Submitted(already_submitted=True, num_labels=len(stored), debrief=debrief)
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
    judged = counts(
        Allocation.attention,
        Allocation.study_id == study.id,
        Allocation.status == AllocationStatus.submitted,
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
        attention={("not judged" if key is None else key): n for key, n in judged.items()},
        experiment=study.experiment.slug if study.experiment else None,
    )
