"""`mturk sync`: pull what MTurk knows, and check the server's submissions against it.

The study server records a submission from whatever the HIT page's URL claims (workerId,
assignmentId, hitId). Anyone can craft such a URL, so a submission counts for the analysis
only once MTurk confirms it: MTurk lists that assignment, on a HIT of this study, for that
worker. Sync sets each MTurk-sourced allocation's `verification`:

- ``confirmed``: MTurk lists the assignment with the same worker and HIT;
- ``flagged``: it does not (unknown assignment, another worker, a HIT not published for
  this study), or the requester rejected the work, with the reason in `verification_note`.
  A flagged submission keeps its labels (excluded from the analysis) and its images go back
  to the pool for someone else (`study_server.allocation.release_flagged`).
  Flags are re-checked on every run: a page can record its labels a moment before MTurk
  hears of the submission, so a later sync may confirm what an earlier one flagged; it then
  counts again, unless its images were labeled by someone else meanwhile (allocation rule 7).

It also grants the study's exclusion qualification (the experiment's, when the study is in
one: markets/mturk/exclusion.py) to every worker who took part, so the remaining HITs of the
study, and of its experiment, disappear for them on MTurk (the server already refuses them a
second assignment; the qualification saves them the wasted click).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.exclusion import Granted, exclusion_of, grant
from markets.mturk.hits import refresh_hits
from markets.mturk.publish import marketplace_name
from markets.mturk.records import Assignment
from markets.mturk.store import (
    mturk_allocations,
    mturk_assignments,
    published_hits,
    study_hit_ids,
)
from study_server.allocation import confirm, release_flagged
from study_server.db.models import Allocation, AllocationStatus, MTurkAssignment
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event, utc_now


@dataclass
class SyncReport:
    study_slug: str
    sandbox: bool
    hits: int = 0
    hits_listed: int = 0
    assignments: dict[str, int] = field(default_factory=dict)  # MTurk status -> count
    confirmed: int = 0
    flagged: list[tuple[int, str]] = field(default_factory=list)  # (allocation id, reason)
    # Work MTurk shows as submitted with no finished submission on the server.
    unmatched_submissions: list[str] = field(default_factory=list)
    granted: int = 0
    grant_failures: list[str] = field(default_factory=list)
    missing_hits: list[str] = field(
        default_factory=list
    )  # HITs MTurk would not list assignments of


def sync(*, sessions: sessionmaker[Session], client: MTurkClient, study_slug: str) -> SyncReport:
    sandbox = client.sandbox
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        hits = published_hits(session, study_id=study.id, sandbox=sandbox)
        exclusion = exclusion_of(study)
    report = SyncReport(study_slug=study.slug, sandbox=sandbox, hits=len(hits))
    by_id = {row.hit_id: row for row in hits.values()}
    listed = refresh_hits(sessions, client, by_id)
    report.hits_listed = len(listed)
    pulled: list[Assignment] = []
    for hit_id in by_id:
        hit = listed.get(hit_id)
        if (
            hit is not None
            and hit.available >= hit.max_assignments
            and hit.pending == 0
            and hit.completed == 0
        ):
            continue  # nobody has taken it: nothing to list
        try:
            pulled.extend(client.iter_assignments(hit_id))
        except errors.RequestRejected as error:  # e.g. a HIT MTurk disposed of long ago
            report.missing_hits.append(f"{hit_id}: {error}")
    for assignment in pulled:
        report.assignments[assignment.status] = report.assignments.get(assignment.status, 0) + 1

    with sessions() as session:
        begin_write(session)
        _store_assignments(session, pulled)
        session.flush()
        workers = _verify(session, study.id, sandbox, report)
        record_event(
            session,
            study_id=study.id,
            kind="mturk_synced",
            detail={
                "marketplace": marketplace_name(sandbox),
                "assignments": report.assignments,
                "confirmed": report.confirmed,
                "flagged": len(report.flagged),
                "unmatched_submissions": report.unmatched_submissions,
            },
        )
        session.commit()
    workers |= {a.worker_id for a in pulled}
    granted, earlier = Granted(), Granted()
    grant(client, exclusion.name, workers, granted)
    for name in exclusion.earlier:  # HITs published before the study joined an experiment
        grant(client, name, workers, earlier, missing_ok=True)
    report.granted = granted.granted
    report.grant_failures = granted.failures + earlier.failures
    return report


def _store_assignments(session: Session, pulled: list[Assignment]) -> None:
    known = mturk_assignments(session, hit_ids=sorted({a.hit_id for a in pulled}))
    now = utc_now()
    for assignment in pulled:
        row = known.get(assignment.assignment_id)
        if row is None:
            row = MTurkAssignment(
                mturk_assignment_id=assignment.assignment_id, hit_id=assignment.hit_id
            )
            session.add(row)
        row.worker_external_id = assignment.worker_id
        row.status = assignment.status
        row.accepted_at = assignment.accepted_at
        row.submitted_at = assignment.submitted_at
        if assignment.feedback and not row.review_note:
            row.review_note = assignment.feedback
        row.synced_at = now


def _verify(session: Session, study_id: int, sandbox: bool, report: SyncReport) -> set[str]:
    """Set the verification of the study's MTurk allocations on this marketplace; their workers."""
    hit_marketplace = study_hit_ids(session, study_id=study_id)
    ours = [hit_id for hit_id, is_sandbox in hit_marketplace.items() if is_sandbox == sandbox]
    on_mturk = mturk_assignments(session, hit_ids=ours)
    workers: set[str] = set()
    finished: set[str] = set()
    for allocation, worker_id in mturk_allocations(session, study_id=study_id):
        if allocation.hit_id in hit_marketplace and hit_marketplace[allocation.hit_id] != sandbox:
            continue  # the other marketplace's business
        workers.add(worker_id)
        if allocation.status != AllocationStatus.submitted:
            continue
        if allocation.mturk_assignment_id:
            finished.add(allocation.mturk_assignment_id)
        reason = _mismatch(allocation, worker_id, on_mturk, hit_marketplace)
        if reason is None and confirm(session, allocation):
            report.confirmed += 1
            continue
        if reason is not None:
            release_flagged(session, allocation, reason=reason)
        report.flagged.append((allocation.id, allocation.verification_note or ""))
    report.unmatched_submissions = sorted(
        row.mturk_assignment_id
        for row in on_mturk.values()
        if row.status == "Submitted" and row.mturk_assignment_id not in finished
    )
    return workers


def _mismatch(
    allocation: Allocation,
    worker_id: str,
    on_mturk: dict[str, MTurkAssignment],
    hit_marketplace: dict[str, bool],
) -> str | None:
    """Why MTurk does not confirm this submission, or None when it does."""
    if allocation.hit_id not in hit_marketplace:
        return f"HIT {allocation.hit_id!r} was not published for this study"
    listed = on_mturk.get(allocation.mturk_assignment_id or "")
    if listed is None:
        return (
            f"MTurk lists no submitted assignment {allocation.mturk_assignment_id!r} "
            f"on HIT {allocation.hit_id}"
        )
    if listed.hit_id != allocation.hit_id:
        return (
            f"MTurk has assignment {listed.mturk_assignment_id} on HIT {listed.hit_id}, "
            f"not {allocation.hit_id}"
        )
    if listed.worker_external_id != worker_id:
        return (
            f"MTurk has assignment {listed.mturk_assignment_id} done by worker "
            f"{listed.worker_external_id}, not {worker_id}"
        )
    if listed.status == "Rejected":
        return rejection_note(listed.review_note)
    return None


def rejection_note(reason: str | None) -> str:
    """The verification note of a submission the requester rejected (it no longer counts)."""
    return f"rejected on MTurk: {reason or 'no reason recorded'}"
