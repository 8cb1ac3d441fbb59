"""`prolific sync`: pull Prolific's list of the study's submissions and check the server's
submissions against it.

The server records labels from whatever the study URL claimed (PROLIFIC_PID, SESSION_ID);
anyone can type such a URL. A submission counts for the analysis only once Prolific
confirms it. Each Prolific allocation of the study is decided again on every run:

- ``confirmed``: Prolific lists a submission whose id is the session the participant was
  bound to, by that participant, finished (AWAITING REVIEW or APPROVED);
- left ``unverified``: listed, same participant, still RESERVED or ACTIVE on Prolific (the
  labels are stored, the participant has not reached Prolific's completion page yet): a later
  sync decides;
- ``flagged`` and returned to the pool (`study_server.release`: labels archived in the audit
  of events, the assignment available again): not listed at all (a forged URL), listed for
  another participant, or RETURNED, TIMED-OUT, REJECTED or SCREENED OUT on Prolific, where
  Prolific has reopened the place, so the assignment must be there for the next person.
  An allocation still in progress is released on the same grounds (a forged URL holding an
  assignment, a participant who returned the study on Prolific mid-way).

Work Prolific shows as finished with no labels on the server (a completion code passed on
by someone) is reported and never approved by default. Every participant Prolific lists as
done with the study (any status but RESERVED/ACTIVE) is added to the study's exclusion
group, which the study and its siblings blocklist.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from contract.cli import UsageError
from markets.prolific import errors
from markets.prolific.client import ProlificClient
from markets.prolific.models import COMPLETED_STATUSES, OPEN_STATUSES, Submission
from markets.prolific.names import exclusion_group_name
from markets.prolific.store import ProlificWork, listed_submissions, prolific_work, published_study
from study_server.allocation import confirm, release_flagged
from study_server.db.models import (
    AllocationStatus,
    ProlificStudy,
    ProlificSubmission,
    Verification,
)
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event, utc_now
from study_server.settings import ProlificSettings


class NotPublished(UsageError):
    """The study has no Prolific study yet (run `prolific publish`)."""


@dataclass
class SyncReport:
    study_slug: str
    prolific_study_id: str
    study_status: str = ""
    listed: Counter[str] = field(default_factory=Counter)  # Prolific status -> count
    confirmed: int = 0
    pending: list[tuple[int, str]] = field(default_factory=list)  # (allocation id, why)
    flagged: list[tuple[int, str]] = field(default_factory=list)
    returned_to_pool: int = 0
    unmatched: list[str] = field(default_factory=list)  # finished on Prolific, no labels here
    group_added: int = 0
    group_problem: str | None = None


def require_published(session: Session, study_slug: str) -> tuple[int, ProlificStudy]:
    study = find_study(session, study_slug, list_known=True)
    row = published_study(session, study_id=study.id)
    if row is None:
        raise NotPublished(
            f"study {study.slug} is not on Prolific; publish it first (`prolific publish "
            f"--study {study.slug}`)"
        )
    return study.id, row


def sync(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    settings: ProlificSettings,
    study_slug: str,
) -> SyncReport:
    with sessions() as session:
        study_id, row = require_published(session, study_slug)
    remote = client.get_study(row.prolific_study_id)
    listed = {sub.id: sub for sub in client.iter_submissions(row.prolific_study_id)}
    report = SyncReport(
        study_slug=study_slug, prolific_study_id=row.prolific_study_id, study_status=remote.status
    )
    report.listed.update(sub.status for sub in listed.values())
    with sessions() as session:
        begin_write(session)
        stored = session.merge(row)
        stored.status = remote.status
        _store(session, row.prolific_study_id, listed)
        _verify(session, study_id, listed, report)
        record_event(
            session,
            study_id=study_id,
            kind="prolific_synced",
            detail={
                "prolific_study": row.prolific_study_id,
                "listed": dict(report.listed),
                "confirmed": report.confirmed,
                "flagged": len(report.flagged),
                "returned_to_pool": report.returned_to_pool,
                "unmatched": report.unmatched,
            },
        )
        session.commit()
        group_id = row.exclusion_group_id
        group_name = exclusion_group_name(find_study(session, study_slug))
    done = {sub.participant_id for sub in listed.values() if sub.status not in OPEN_STATUSES}
    _fill_groups(client, settings, group_id, group_name, done, report)
    return report


def _add_missing(client: ProlificClient, group_id: str, participants: set[str]) -> int:
    missing = sorted(participants - client.group_members(group_id))
    if missing:
        client.add_to_group(group_id, missing)
    return len(missing)


def _store(session: Session, prolific_study_id: str, listed: dict[str, Submission]) -> None:
    known = listed_submissions(session, prolific_study_id=prolific_study_id)
    now = utc_now()
    for sub in listed.values():
        row = known.get(sub.id)
        if row is None:
            row = ProlificSubmission(prolific_study_id=prolific_study_id, submission_id=sub.id)
            session.add(row)
        row.participant_id = sub.participant_id
        row.status = sub.status
        row.started_at = sub.started_at
        row.completed_at = sub.completed_at
        row.study_code = sub.study_code
        row.synced_at = now


def _verify(
    session: Session, study_id: int, listed: dict[str, Submission], report: SyncReport
) -> None:
    stored = listed_submissions(session, prolific_study_id=report.prolific_study_id)
    with_labels: set[str] = set()
    for work in prolific_work(session, study_id=study_id):
        allocation = work.allocation
        if allocation.status == AllocationStatus.expired:
            continue  # holds nothing (timed out on the server, or returned to the pool)
        verdict, reason = decide(work, listed, stored)
        if allocation.status == AllocationStatus.active:
            if verdict == "flagged":  # forged, or the participant left Prolific mid-way
                release_flagged(session, allocation, reason=reason or "")
                report.returned_to_pool += 1
            continue
        if verdict == "confirmed":
            if confirm(session, allocation):
                report.confirmed += 1
            else:
                report.flagged.append((allocation.id, allocation.verification_note or ""))
            with_labels.add(work.session_id or "")
        elif verdict == "pending":
            allocation.verification = Verification.unverified
            allocation.verification_note = reason
            report.pending.append((allocation.id, reason or ""))
            with_labels.add(work.session_id or "")
        else:
            if allocation.verification != Verification.flagged:  # newly flagged: say so once
                report.flagged.append((allocation.id, reason or ""))
                report.returned_to_pool += 1
            release_flagged(session, allocation, reason=reason or "")
    report.unmatched = sorted(
        sub.id
        for sub in listed.values()
        if sub.status in COMPLETED_STATUSES and sub.id not in with_labels
    )


def decide(
    work: ProlificWork,
    listed: dict[str, Submission],
    stored: dict[str, ProlificSubmission] | None = None,
) -> tuple[str, str | None]:
    """("confirmed" | "pending" | "flagged", why) for one Prolific allocation."""
    if work.session_id is None:
        return "flagged", "no Prolific session is bound to this participant"
    sub = listed.get(work.session_id)
    if sub is None:
        return "flagged", f"Prolific lists no submission {work.session_id} in this study"
    if sub.participant_id != work.participant_id:
        return "flagged", (
            f"Prolific has submission {sub.id} by participant {sub.participant_id}, "
            f"not {work.participant_id}"
        )
    if sub.status in COMPLETED_STATUSES:
        return "confirmed", None
    if sub.status in OPEN_STATUSES:
        return "pending", f"still {sub.status} on Prolific"
    note = (stored or {}).get(sub.id)
    if sub.status == "REJECTED":
        return "flagged", rejection_note(note.review_note if note else None)
    return "flagged", f"{sub.status} on Prolific"


def rejection_note(reason: str | None) -> str:
    """The verification note of a submission rejected on Prolific (it no longer counts)."""
    return f"rejected on Prolific: {reason or 'no reason recorded here'}"


def _fill_groups(
    client: ProlificClient,
    settings: ProlificSettings,
    group_id: str | None,
    group_name: str,
    participants: set[str],
    report: SyncReport,
) -> None:
    """Put the participants in the group the study blocklists (`group_id`, else the one named
    `group_name`), and in the group named `group_name` when that is another one: a study
    published before it joined an experiment blocklists a group of its own, while the later
    studies of the experiment blocklist the experiment's."""
    if not participants:
        return
    try:
        named = client.find_group(settings.workspace_id or "", group_name)
        targets = {group_id} if group_id is not None else set()
        if named is not None:
            targets.add(named.id)
        if not targets:
            report.group_problem = f"participant group {group_name!r} not found on Prolific"
            return
        # People newly excluded (into one group or both).
        report.group_added = max(_add_missing(client, t, participants) for t in sorted(targets))
    except errors.RequestRejected as error:
        report.group_problem = str(error)
