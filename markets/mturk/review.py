"""`mturk approve` / `mturk reject`: pay for work, or refuse it with a reason the worker sees.

Both act on what the last `mturk sync` stored. Without explicit ids, `approve` pays every
submitted assignment whose labels the server holds and MTurk confirmed; work MTurk shows as
submitted without labels on the server is left for the requester to look at. `reject` only
ever acts on ids named on the command line, with a reason: a rejection hurts a worker's
record, so it is never a default.

Each decision is stored (status, review note, an event) right after MTurk accepts it. One
refusal from MTurk (already approved, auto-approved meanwhile) does not stop the others.

`mturk review` proposes a decision per submitted assignment from the study's attention policy
(study_server/attention.py) and acts only once the requester confirms. MTurk lets a requester
reject work that fails attention checks the HIT stated (the page's instructions say some
images check attention), but a rejection lowers the worker's approval rating, which costs
them other work. So the proposal for a failed check is **approve, and leave the labels out
of Table 2**; rejecting is the requester's explicit choice (`--reject-failed-attention` with
a reason, to which each worker's own numbers are added). Work without confirmed labels on
the server is left for the requester, as `approve` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from markets.console import APPROVE, LEAVE, REJECT, Proposal, ReviewReport
from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.publish import marketplace_name
from markets.mturk.store import mturk_assignments, study_hit_ids
from markets.mturk.sync import rejection_note
from study_server import attention
from study_server.allocation import release_flagged
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    AttentionOutcome,
    MTurkAssignment,
    Verification,
)
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event

MIN_REJECTION_REASON = 10
# MTurk's limit on RequesterFeedback, which is what the worker reads.
MAX_FEEDBACK = 1024
RULE = (
    "MTurk's rule as applied here: a failed attention check is approved and left out of "
    "Table 2 unless you chose --reject-failed-attention (docs/protocol.md)"
)


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
    reason = _check_reason(reason)
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
        lambda a: client.reject(a, reason),
        reason,
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


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < MIN_REJECTION_REASON:
        raise ReviewRefused(
            f"give the worker a reason of at least {MIN_REJECTION_REASON} characters, "
            f"got {reason!r}"
        )
    return reason


def propose(
    *,
    sessions: sessionmaker[Session],
    sandbox: bool,
    study_slug: str,
    reject_failed_attention: bool = False,
    reason: str | None = None,
) -> list[Proposal]:
    """A decision per assignment MTurk lists as Submitted, from the study's attention policy."""
    if reject_failed_attention:
        if reason is None:
            raise ReviewRefused(
                "--reject-failed-attention needs --reason: the worker reads it with their numbers"
            )
        reason = _check_reason(reason)
    elif reason is not None:
        raise ReviewRefused("--reason goes with --reject-failed-attention")
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        known = _submitted(session, study.id, sandbox)
        open_work = sorted(
            (row for row in known.values() if row.status == "Submitted"),
            key=lambda row: row.mturk_assignment_id,
        )
        allocations = {
            a.mturk_assignment_id: a
            for a in session.scalars(
                select(Allocation).where(
                    Allocation.study_id == study.id,
                    Allocation.mturk_assignment_id.in_([r.mturk_assignment_id for r in open_work]),
                )
            )
        }
        return [
            _proposal(
                row, allocations.get(row.mturk_assignment_id), reject_failed_attention, reason
            )
            for row in open_work
        ]


def _proposal(
    row: MTurkAssignment, allocation: Allocation | None, reject_failed: bool, reason: str | None
) -> Proposal:
    ids = (row.mturk_assignment_id, row.worker_external_id)
    if (
        allocation is None
        or allocation.status != AllocationStatus.submitted
        or allocation.verification != Verification.confirmed
    ):
        why = "no confirmed labels on the server"
        if allocation is not None and allocation.verification == Verification.flagged:
            why += f" (flagged: {allocation.verification_note})"
        return Proposal(*ids, LEAVE, False, why + "; look at it yourself")
    numbers = attention.note(allocation.attention_detail, allocation.attention)
    if allocation.attention != AttentionOutcome.failed_attention:
        outcome = allocation.attention.value if allocation.attention else "not judged"
        return Proposal(*ids, APPROVE, True, f"{outcome}: {numbers}" if numbers else outcome)
    if not reject_failed:
        return Proposal(
            *ids, APPROVE, False, f"failed attention ({numbers}): paid, left out of Table 2"
        )
    message = f"{reason} ({numbers})"
    if len(message) > MAX_FEEDBACK:
        raise ReviewRefused(
            f"the rejection reason with the numbers is {len(message)} characters; MTurk takes "
            f"at most {MAX_FEEDBACK}: shorten --reason"
        )
    return Proposal(*ids, REJECT, False, f"failed attention ({numbers})", message)


def carry_out(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    study_slug: str,
    proposals: Sequence[Proposal],
    feedback: str | None = None,
) -> tuple[ReviewReport, ReviewReport]:
    """Approve and reject as proposed (what was confirmed); the left ones are untouched."""
    approved, rejected = ReviewReport("Approved"), ReviewReport("Rejected")
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        known = _submitted(session, study.id, client.sandbox)
    wanted = [known[p.submission] for p in proposals if p.decision == APPROVE]
    approved.left_for_review = [p.submission for p in proposals if p.decision == LEAVE]
    _decide(
        sessions,
        study.id,
        client.sandbox,
        wanted,
        approved,
        lambda a: client.approve(a, feedback),
        feedback,
    )
    for proposal in proposals:
        if proposal.decision != REJECT:
            continue
        message = proposal.message or ""
        _decide(
            sessions,
            study.id,
            client.sandbox,
            [known[proposal.submission]],
            rejected,
            lambda a, message=message: client.reject(a, message),
            message,
        )
    return approved, rejected
