"""`prolific approve` / `prolific reject`: pay confirmed work, or refuse it with a category and
a message the participant reads.

Both act only on submissions the last `prolific sync` confirmed (Prolific lists them, by
that participant, finished) and that Prolific still shows AWAITING REVIEW. Without ids,
`approve` pays every such submission through Prolific's bulk approval (one by one if Prolific
refuses the batch, so one bad id does not block the rest); work Prolific shows as finished
without labels on the server is left for the researcher to look at. `reject` only ever acts
on the ids named, with one of Prolific's rejection categories and a message of at least 100
characters (Prolific's rule): a rejection hurts a participant's record, so it is never a
default. A rejected submission stops counting at once and its assignment goes back to the
pool (Prolific reopens the place).

Each decision is stored (Prolific's status, the note, an event) right after Prolific accepts
it; one refusal does not stop the others.

`prolific review` proposes a decision per submission awaiting review from the study's
attention policy and approves once confirmed. Prolific's policy allows rejecting for failed
attention checks only when they are checks of its own kinds (e.g. instructional manipulation
checks, failed twice), not for a wrong answer to a task item; the catch trials here are task
items (plain digits), so a submission that fails them is **approved and left out of Table 2**,
never rejected: `prolific review` proposes nothing else. A rejection on other grounds stays
`prolific reject`, named and with Prolific's category and message.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from markets.console import APPROVE, LEAVE, Proposal, ReviewReport
from markets.prolific import errors
from markets.prolific.client import ProlificClient
from markets.prolific.models import (
    MIN_REJECTION_MESSAGE,
    REJECTION_CATEGORIES,
    SubmissionTransition,
)
from markets.prolific.store import listed_submissions, prolific_work
from markets.prolific.sync import rejection_note, require_published
from study_server import attention
from study_server.allocation import release_flagged
from study_server.db.models import AllocationStatus, AttentionOutcome, Verification
from study_server.db.session import begin_write
from study_server.db.store import record_event

BULK_SIZE = 100
RULE = (
    "Prolific's rule as applied here: a failed attention check (our catch trials are task "
    "items, not checks of Prolific's kinds) is approved and left out of Table 2, never "
    "rejected (docs/protocol.md)"
)


class ReviewRefused(ValueError):
    """The ids, the category or the message cannot be acted on (bad input, exit 2)."""


def _reviewable(session: Session, study_id: int, prolific_study_id: str) -> dict[str, str]:
    """Confirmed submissions awaiting review: session (submission) id -> participant id."""
    listed = listed_submissions(session, prolific_study_id=prolific_study_id)
    chosen = {}
    for work in prolific_work(session, study_id=study_id):
        allocation = work.allocation
        row = listed.get(work.session_id or "")
        if (
            row is not None
            and allocation.status == AllocationStatus.submitted
            and allocation.verification == Verification.confirmed
            and row.status == "AWAITING REVIEW"
        ):
            chosen[row.submission_id] = work.participant_id
    return chosen


def _pick(reviewable: dict[str, str], ids: Sequence[str]) -> list[str]:
    wanted = [i.strip().lower() for i in ids]
    unknown = [i for i in wanted if i not in reviewable]
    if unknown:
        raise ReviewRefused(
            "not confirmed submissions of this study awaiting review (run `prolific sync`; "
            "only work whose labels the server holds and Prolific confirmed is reviewed "
            "here): " + ", ".join(unknown)
        )
    return list(dict.fromkeys(wanted))


def approve(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    study_slug: str,
    submission_ids: Sequence[str] = (),
) -> ReviewReport:
    report = ReviewReport("APPROVED")
    with sessions() as session:
        study_id, published = require_published(session, study_slug)
        reviewable = _reviewable(session, study_id, published.prolific_study_id)
        if submission_ids:
            chosen = _pick(reviewable, submission_ids)
        else:
            chosen = sorted(reviewable)
            listed = listed_submissions(session, prolific_study_id=published.prolific_study_id)
            report.left_for_review = sorted(
                sid
                for sid, row in listed.items()
                if row.status == "AWAITING REVIEW" and sid not in reviewable
            )
    for start in range(0, len(chosen), BULK_SIZE):
        batch = chosen[start : start + BULK_SIZE]
        try:
            client.bulk_approve(published.prolific_study_id, batch)
            approved = batch
        except errors.RequestRejected:
            approved = _one_by_one(client, batch, report)
        _record(sessions, study_id, published.prolific_study_id, approved, report, note=None)
    return report


def _one_by_one(client: ProlificClient, batch: list[str], report: ReviewReport) -> list[str]:
    approved = []
    for submission_id in batch:
        try:
            client.transition_submission(submission_id, SubmissionTransition(action="APPROVE"))
            approved.append(submission_id)
        except errors.RequestRejected as error:
            report.failed.append((submission_id, str(error)))
    return approved


def reject(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    study_slug: str,
    submission_ids: Sequence[str],
    category: str,
    message: str,
) -> ReviewReport:
    if not submission_ids:
        raise ReviewRefused("name the submissions to reject; rejection is never applied to all")
    if category not in REJECTION_CATEGORIES:
        raise ReviewRefused(
            f"--category must be one of Prolific's rejection categories "
            f"({', '.join(REJECTION_CATEGORIES)}), got {category!r}"
        )
    message = " ".join(message.split())
    if len(message) < MIN_REJECTION_MESSAGE:
        raise ReviewRefused(
            f"Prolific needs a rejection message of at least {MIN_REJECTION_MESSAGE} characters "
            f"that tells the participant why; got {len(message)}: {message!r}"
        )
    report = ReviewReport("REJECTED")
    with sessions() as session:
        study_id, published = require_published(session, study_slug)
        chosen = _pick(_reviewable(session, study_id, published.prolific_study_id), submission_ids)
    note = f"{category}: {message}"
    for submission_id in chosen:
        transition = SubmissionTransition(
            action="REJECT", message=message, rejection_category=category
        )
        try:
            client.transition_submission(submission_id, transition)
        except errors.RequestRejected as error:
            report.failed.append((submission_id, str(error)))
            continue
        _record(sessions, study_id, published.prolific_study_id, [submission_id], report, note=note)
    return report


def _record(
    sessions: sessionmaker[Session],
    study_id: int,
    prolific_study_id: str,
    submission_ids: list[str],
    report: ReviewReport,
    *,
    note: str | None,
) -> None:
    """Store Prolific's new status for these submissions; a rejection releases the work."""
    if not submission_ids:
        return
    with sessions() as session:
        begin_write(session)
        listed = listed_submissions(session, prolific_study_id=prolific_study_id)
        work = {w.session_id: w for w in prolific_work(session, study_id=study_id)}
        for submission_id in submission_ids:
            row = listed[submission_id]
            row.status = report.decision
            row.review_note = note
            if report.decision == "REJECTED":
                release_flagged(
                    session, work[submission_id].allocation, reason=rejection_note(note)
                )
            record_event(
                session,
                study_id=study_id,
                kind=f"prolific_{report.decision.lower()}",
                worker=row.participant_id,
                detail={"submission": submission_id, "note": note},
            )
        session.commit()
    report.done.extend(submission_ids)


def propose(*, sessions: sessionmaker[Session], study_slug: str) -> list[Proposal]:
    """Approve every confirmed submission awaiting review (those that failed the attention
    policy too, left out of Table 2); leave the rest for the researcher."""
    proposals = []
    with sessions() as session:
        study_id, published = require_published(session, study_slug)
        listed = listed_submissions(session, prolific_study_id=published.prolific_study_id)
        ours = {w.session_id: w.allocation for w in prolific_work(session, study_id=study_id)}
        reviewable = _reviewable(session, study_id, published.prolific_study_id)
        for submission_id, row in sorted(listed.items()):
            if row.status != "AWAITING REVIEW":
                continue
            allocation = ours.get(submission_id)
            if submission_id not in reviewable or allocation is None:
                why = "no confirmed labels on the server; look at it yourself"
                proposals.append(Proposal(submission_id, row.participant_id, LEAVE, False, why))
                continue
            numbers = attention.note(allocation.attention_detail, allocation.attention)
            failed = allocation.attention == AttentionOutcome.failed_attention
            outcome = allocation.attention.value if allocation.attention else "not judged"
            why = (
                f"failed attention ({numbers}): paid, left out of Table 2"
                if failed
                else (f"{outcome}: {numbers}" if numbers else outcome)
            )
            proposals.append(Proposal(submission_id, row.participant_id, APPROVE, not failed, why))
    return proposals
