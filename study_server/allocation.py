"""Who gets which images: every rule of allocation, in one place.

A *claim* is one accept: an MTurk worker opening the HIT page (workerId, assignmentId and
hitId as MTurk appended them to the URL), or a lab participant with an invitation code.
MTurk signs none of those ids, so the server cannot tell a forged claim from a real one
when it arrives; `mturk sync` tells later. The rules below make forging pointless and
harmless instead (the threat model is in docs/deployment.md):

1. **One hold per worker and study** (schema): a worker who holds an assignment gets it again
   (a reload, a returned HIT accepted anew); one who submitted gets nothing more.
2. **A short hold that never grows**: an allocation expires `timeout` after the accept, and
   never later than the HIT's MTurk assignment duration; coming back does not extend it.
   Expired holds go back to the pool at the next accept.
3. **Per address**: one source address holds at most `holds_per_address` active MTurk holds
   of a study (`lab_holds_per_address` for invitations); past that, 429 with Retry-After.
4. **Per HIT**: a HIT id draws at most `assignments_per_hit` different assignments from the
   pool at once. On MTurk a HIT (MaxAssignments=1) has at most one worker at a time, so
   among several claims of one HIT at most one is that worker; the others returned it, or
   are forged.
5. **Real workers are served beyond the pool**: when a claim cannot draw from the pool (it
   is empty, or the HIT drew its share), it *shares* the images of a claim that cannot all
   be real: one of the same HIT, or one of a HIT that drew more than one assignment (by
   rule 4, all but one of those are returned or forged). Of the candidates it takes the
   assignment with the fewest claims, then one of its own HIT, then the oldest. So forged
   claims can never leave a worker who really accepted a HIT without images: whatever they
   hold, that worker labels alongside them, and `mturk sync` later counts the one MTurk
   confirms. A hold is shared only once it is `share_after` old; a claim arriving sooner
   waits (409 with Retry-After; the HIT page retries by itself).
6. **Flagged work goes back**: a submission that `mturk sync` flags or that the requester
   rejects stops counting, keeps its labels (excluded, with the reason) and its assignment
   returns to the pool unless another claim holds or submitted it (`release_flagged`).
7. **One counted submission per assignment** (schema): if MTurk confirms two submissions of
   the same images, the earlier counted one stays and the later one is flagged as a duplicate.
8. **One study per experiment**: a person who holds an allocation (in any state) in another
   study of the same experiment (`store.sibling_study_ids`) is refused (409), whatever the
   source. Claims of one person take turns (their `workers` row is locked), so two accepts
   racing into two studies cannot both pass.
9. **Consent first**: nothing is allocated without the SHA-256 of the study's current consent
   text, which the person agreed to on the page (`protocol_texts.checked_consent`); the
   allocation keeps it, with the time.

Lab claims (invitations) draw only from the pool and are never shared: the invitation is
the credential. Every write runs in one transaction that the caller opened with
`begin_write`; on PostgreSQL the rows that decide are locked (`FOR UPDATE`, `SKIP LOCKED`
to pick a free assignment, the HIT row to serialise claims of one HIT), on SQLite
`BEGIN IMMEDIATE` serialises writers.

The rules an accept applies take a `Database`: a Session, or on PostgreSQL the bare driver
connection of the labeling API (`db.rendered`), so every statement here is a Core
statement built once, and rows are read by column, never as ORM objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import BindParameter, ColumnElement

from study_server.db.models import (
    COUNTED_VERIFICATIONS,
    Allocation,
    AllocationStatus,
    Assignment,
    AssignmentStatus,
    MTurkHit,
    Verification,
    Worker,
    WorkerSource,
)
from study_server.db.rendered import Call, Database
from study_server.db.store import experiment_study_ids, record_event
from study_server.errors import ConflictError, LimitReached, NotFoundError

if TYPE_CHECKING:
    from study_server.settings import Settings

TAKEN = "every assignment of this study is taken or done; thank you for your interest"


@dataclass(frozen=True)
class AllocationPolicy:
    """The limits of rules 2-5, from settings (`AllocationPolicy.from_settings`)."""

    timeout: timedelta
    holds_per_address: int = 3
    lab_holds_per_address: int = 0
    assignments_per_hit: int = 3
    share_after: timedelta = timedelta(seconds=60)

    @classmethod
    def from_settings(cls, settings: Settings) -> AllocationPolicy:
        limits = settings.limits
        return cls(
            timeout=timedelta(seconds=settings.allocation_timeout_s),
            holds_per_address=limits.holds_per_address,
            lab_holds_per_address=limits.lab_holds_per_address,
            assignments_per_hit=limits.assignments_per_hit,
            share_after=timedelta(seconds=limits.share_after_s),
        )


@dataclass(frozen=True)
class Choice:
    assignment: Any  # a row of `ASSIGNMENT_COLUMNS`
    shared: bool


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _live(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Claims that hold their images: active and in time, or submitted and not flagged."""
    return or_(
        and_(Allocation.status == AllocationStatus.active, Allocation.expires_at >= now),
        and_(
            Allocation.status == AllocationStatus.submitted,
            Allocation.verification != Verification.flagged,
        ),
    )


def refuse_sibling_participant(
    session: Database,
    *,
    study_id: int,
    experiment_id: int | None,
    source: WorkerSource,
    external_id: str,
) -> None:
    """Rule 8: refuse a person who took part in another study of the same experiment.
    `experiment_id` is the study's (None: a study of its own, nothing to ask)."""
    if experiment_id is None:
        return
    siblings = experiment_study_ids(session, experiment_id=experiment_id)
    others = [i for i in siblings if i != study_id]
    if not others:
        return
    elsewhere = session.scalar(
        _ELSEWHERE, {"others": others, "source": source, "external_id": external_id}
    )
    if elsewhere is not None:
        raise ConflictError(
            "you already took part in another study of this experiment; each person takes "
            "part in only one"
        )


def hold_deadline(hit: Any, *, now: datetime, policy: AllocationPolicy) -> datetime:
    """Rule 2: `timeout`, and never past the HIT's MTurk assignment duration."""
    hold = policy.timeout
    if hit is not None and hit.assignment_duration_s:
        hold = min(hold, timedelta(seconds=hit.assignment_duration_s))
    return now + hold


def address_question(
    *, study_id: int, address: str | None, lab: bool, now: datetime, policy: AllocationPolicy
) -> Call | None:
    """Rule 3: the deadlines of the holds the claim's address has in the study, as a
    statement to send with others (`rendered.execute_together`); None when there is no limit
    to check. `checked_address` checks the answer."""
    if address is None or _address_limit(lab, policy) == 0:
        return None
    source = WorkerSource.local if lab else WorkerSource.mturk
    return _ADDRESS_HOLDS, {"study_id": study_id, "address": address, "now": now, "source": source}


def checked_address(
    deadlines: list[datetime], *, lab: bool, now: datetime, policy: AllocationPolicy
) -> None:
    """Rule 3: refuse a new hold from an address that already holds its share."""
    limit = _address_limit(lab, policy)
    if limit and len(deadlines) >= limit:
        wait = _seconds_until(min(deadlines), now)
        raise LimitReached(
            f"{len(deadlines)} people from your network are working on this study already "
            f"(at most {limit} at once); try again in {wait} s",
            retry_after=wait,
        )


def _address_limit(lab: bool, policy: AllocationPolicy) -> int:
    return policy.lab_holds_per_address if lab else policy.holds_per_address


def drawn_question(*, study_id: int, hit_id: str, now: datetime) -> Call:
    """Rule 4: the assignments the HIT holds (by live claims), as a statement to send with
    others; its answer is `choose_assignment`'s `drawn`. Ask it after locking the HIT's row
    (`hit_question`, earlier in the same round trip): claims of one HIT take turns."""
    return _DRAWN_BY_HIT, {"study_id": study_id, "hit_id": hit_id, "now": now}


def choose_assignment(
    session: Database,
    *,
    study_id: int,
    drawn: list[int] | None,
    now: datetime,
    policy: AllocationPolicy,
) -> Choice:
    """Rules 4 and 5: a fresh assignment from the pool, or one to share. `drawn`: what the
    claim's HIT holds (the answer to `drawn_question`), None for a lab claim."""
    if drawn is None:  # a lab claim: the pool only
        fresh = _from_pool(session, study_id)
        if fresh is None:
            raise ConflictError(TAKEN)
        return Choice(fresh, shared=False)
    if len(drawn) < policy.assignments_per_hit:
        fresh = _from_pool(session, study_id)
        if fresh is not None:
            return Choice(fresh, shared=False)
    own = set(drawn)
    candidates = own | set(_drawn_by_crowded_hits(session, study_id=study_id, now=now))
    if not candidates:
        raise ConflictError(TAKEN)
    claims = _claims_on(session, candidates, now=now)
    if not claims:  # their holds ended between the two questions (a commit in between)
        raise ConflictError(
            "the assignments of this study changed hands just now; try again in 1 s",
            retry_after=1,
        )
    # The fewest claims, then the HIT's own, then the oldest; if that one is not
    # `share_after` old yet, the claim waits for it rather than take one more people already
    # share (sharing spreads evenly: a HIT whose own draws were all shared already, by people
    # of HITs that hold nothing, does not make a third person on them).
    chosen = min(claims, key=lambda a: (claims[a][0], a not in own, claims[a][1], a))
    ready_at = claims[chosen][1] + policy.share_after
    if ready_at > now:
        wait = _seconds_until(ready_at, now)
        raise ConflictError(
            f"every assignment of this study is taken right now; try again in {wait} s",
            retry_after=wait,
        )
    assignment = session.execute(_ASSIGNMENT_LOCKED, {"id": chosen}).one()
    return Choice(assignment, shared=True)


def _from_pool(session: Database, study_id: int) -> Any:
    return session.execute(_POOL_NEXT, {"study_id": study_id}).first()


def _drawn_by_crowded_hits(session: Database, *, study_id: int, now: datetime) -> list[int]:
    """Assignments held through HITs that drew more than one (all but one not the HIT's worker)."""
    return list(session.scalars(_DRAWN_BY_CROWDED_HITS, {"study_id": study_id, "now": now}))


def _claims_on(
    session: Database, assignment_ids: Iterable[int], *, now: datetime
) -> dict[int, tuple[int, datetime]]:
    """For each assignment: how many live claims it has, and when the oldest was made."""
    rows = session.execute(_CLAIMS_ON, {"ids": list(assignment_ids), "now": now}).all()
    return {assignment_id: (int(n), oldest) for assignment_id, n, oldest in rows}


def refresh_assignments(session: Database, assignment_ids: Iterable[int]) -> None:
    """Each assignment's status from its claims: submitted (a submission that is not
    flagged), allocated (an active hold), or back in the pool."""
    ids = sorted(set(assignment_ids))
    if not ids:
        return
    claims = session.execute(_CLAIM_STATES_AMONG, {"ids": ids}).all()
    submitted = {
        assignment_id
        for assignment_id, status, verification in claims
        if status == AllocationStatus.submitted and verification != Verification.flagged
    }
    active = {
        assignment_id for assignment_id, status, _ in claims if status == AllocationStatus.active
    }
    for status, group in (
        (AssignmentStatus.submitted, submitted),
        (AssignmentStatus.allocated, active - submitted),
        (AssignmentStatus.available, set(ids) - submitted - active),
    ):
        if group:
            session.execute(_SET_ASSIGNMENT_STATUS, {"ids": sorted(group), "new_status": status})


def overdue_question(*, study_id: int, now: datetime) -> Call:
    """Rule 2: the study's holds past their deadline (their ids; each locked with its
    assignment, and one whose rows another transaction holds is left to it), a statement to
    send with others; `expire` ends them."""
    return _OVERDUE, {"study_id": study_id, "now": now}


def expire(session: Database, *, study_id: int, overdue: list[int]) -> None:
    """Rule 2: end the holds `overdue_question` found; their images go back."""
    if not overdue:
        return
    released = session.scalars(_EXPIRE, {"ids": overdue}).all()
    refresh_assignments(session, released)
    record_event(
        session,
        kind="allocations_expired",
        study_id=study_id,
        detail={"assignments": sorted(set(released))},
    )


def release_flagged(session: Session, allocation: Allocation, *, reason: str) -> None:
    """Rule 6: the submission stops counting, keeps its labels; its images go back to the
    pool unless another claim holds them. A hold not yet submitted (a forged claim the
    market does not know, or work returned on the market) ends at once. Call inside the
    caller's write transaction."""
    was = allocation.verification
    allocation.verification = Verification.flagged
    allocation.verification_note = reason
    if allocation.status == AllocationStatus.active:
        allocation.status = AllocationStatus.expired
        allocation.source_address = None
    session.flush()
    refresh_assignments(session, [allocation.assignment_id])
    if was != Verification.flagged:
        status = session.scalar(
            select(Assignment.status).where(Assignment.id == allocation.assignment_id)
        )
        record_event(
            session,
            kind="submission_flagged",
            study_id=allocation.study_id,
            assignment_id=allocation.assignment_id,
            detail={
                "allocation": allocation.id,
                "reason": reason,
                "assignment_now": getattr(status, "value", status),
            },
        )


def confirm(session: Session, allocation: Allocation) -> bool:
    """Rule 7: count a submission MTurk confirms, unless the same images already have a
    counted submission (then it is flagged as a duplicate). True when it counts."""
    other = session.scalar(
        select(Allocation.id).where(
            Allocation.assignment_id == allocation.assignment_id,
            Allocation.id != allocation.id,
            Allocation.status == AllocationStatus.submitted,
            Allocation.verification.in_(COUNTED_VERIFICATIONS),
        )
    )
    if other is not None:
        release_flagged(
            session,
            allocation,
            reason=(
                "MTurk confirms it, but its images were labeled again after an earlier flag "
                f"(allocation {other} counts); review it before paying"
            ),
        )
        return False
    allocation.verification = Verification.confirmed
    allocation.verification_note = None
    session.flush()
    refresh_assignments(session, [allocation.assignment_id])
    return True


def hit_question(hit_id: str) -> Call:
    """The HIT's row, locked, so claims of one HIT take turns (its study, whether it is a
    sandbox HIT, its assignment duration): a statement to send with others
    (`rendered.execute_together`), its answer checked by `checked_hit`."""
    return _HIT_LOCKED, {"hit_id": hit_id}


def checked_hit(hit: Any, *, study_id: int, study_slug: str, hit_id: str) -> Any:
    """The answer to `hit_question`, unless the HIT is of another study, or a sandbox HIT of
    a study that is now published live."""
    if hit is None or hit.study_id != study_id:
        raise NotFoundError(f"HIT {hit_id!r} is not a HIT of study {study_slug!r}")
    if hit.sandbox and hit.study_is_live:
        raise NotFoundError(
            f"HIT {hit_id!r} is a sandbox HIT, and study {study_slug!r} is now live"
        )
    return hit


# The statements of every accept, built once: building one per call cost more CPU than
# running it (0.32-0.42 ms against 0.12-0.18 ms a query, measured on PostgreSQL).
_ADDRESS_HOLDS = (
    select(Allocation.expires_at)
    .join(Worker, Worker.id == Allocation.worker_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Allocation.source_address == bindparam("address"),
        Allocation.status == AllocationStatus.active,
        Allocation.expires_at >= bindparam("now"),
        Worker.source == bindparam("source"),
    )
)
# What an accept reads of the assignment it gives.
ASSIGNMENT_COLUMNS = (Assignment.id, Assignment.status, Assignment.ordinal, Assignment.public_id)
_POOL_NEXT = (
    select(*ASSIGNMENT_COLUMNS)
    .where(
        Assignment.study_id == bindparam("study_id"),
        Assignment.status == AssignmentStatus.available,
    )
    .order_by(Assignment.ordinal)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_DRAWN_BY_HIT = (
    select(Allocation.assignment_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Allocation.hit_id == bindparam("hit_id"),
        _live(bindparam("now")),
    )
    .distinct()
)
# The overdue holds' assignments are locked with them: `expire` updates those rows, and a
# submission locks its assignment before the person's hold, as the accept must too.
_OVERDUE = (
    select(Allocation.id)
    .join(Assignment, Assignment.id == Allocation.assignment_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Allocation.status == AllocationStatus.active,
        Allocation.expires_at < bindparam("now"),
    )
    .order_by(Allocation.id)
    .with_for_update(of=(Allocation, Assignment), skip_locked=True)
)
_ASSIGNMENT_LOCKED = (
    select(*ASSIGNMENT_COLUMNS).where(Assignment.id == bindparam("id")).with_for_update()
)
_live_hit = MTurkHit.__table__.alias("live_hit")
_HIT_LOCKED = (
    select(
        MTurkHit.id,
        MTurkHit.study_id,
        MTurkHit.sandbox,
        MTurkHit.assignment_duration_s,
        # Asked with the lock (one round trip): only a sandbox HIT's claim needs it.
        select(_live_hit.c.id)
        .where(_live_hit.c.study_id == MTurkHit.study_id, _live_hit.c.sandbox.is_(False))
        .exists()
        .label("study_is_live"),
    )
    .where(MTurkHit.hit_id == bindparam("hit_id"))
    .with_for_update(of=MTurkHit)
)
_ELSEWHERE = (
    select(Allocation.id)
    .join(Worker, Worker.id == Allocation.worker_id)
    .where(
        Allocation.study_id.in_(bindparam("others", expanding=True)),
        Worker.source == bindparam("source"),
        Worker.external_id == bindparam("external_id"),
    )
    .limit(1)
)
_crowded = (
    select(Allocation.hit_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Allocation.hit_id.is_not(None),
        _live(bindparam("now")),
    )
    .group_by(Allocation.hit_id)
    .having(func.count(func.distinct(Allocation.assignment_id)) > 1)
)
_DRAWN_BY_CROWDED_HITS = (
    select(Allocation.assignment_id)
    .where(
        Allocation.study_id == bindparam("study_id"),
        Allocation.hit_id.in_(_crowded),
        _live(bindparam("now")),
    )
    .distinct()
)
_CLAIMS_ON = (
    select(Allocation.assignment_id, func.count(), func.min(Allocation.allocated_at))
    .where(Allocation.assignment_id.in_(bindparam("ids", expanding=True)), _live(bindparam("now")))
    .group_by(Allocation.assignment_id)
)
# The claims on some assignments that decide their status: submitted, or active.
_CLAIM_STATES_AMONG = select(
    Allocation.assignment_id, Allocation.status, Allocation.verification
).where(
    Allocation.assignment_id.in_(bindparam("ids", expanding=True)),
    Allocation.status.in_([AllocationStatus.submitted, AllocationStatus.active]),
)
_assignments = Assignment.__table__
_SET_ASSIGNMENT_STATUS = (
    update(_assignments)
    .where(
        _assignments.c.id.in_(bindparam("ids", expanding=True)),
        _assignments.c.status != bindparam("new_status", type_=_assignments.c.status.type),
    )
    .values(status=bindparam("new_status", type_=_assignments.c.status.type))
)
_allocations = Allocation.__table__
_EXPIRE = (
    update(_allocations)
    .where(_allocations.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=AllocationStatus.expired, source_address=None)
    .returning(_allocations.c.assignment_id)
)
