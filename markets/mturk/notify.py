"""`mturk notify`: a message to the study's workers through MTurk's NotifyWorkers.

MTurk delivers a message only to workers whose work the requester approved or rejected (a
worker who merely submitted, or never worked for you, is a "HardFailure"), caps the subject
at 200 characters and the text at 4,096, and takes at most 100 workers a call. The limits are
checked here before any call, the list is sent in batches of 100, and every worker MTurk
could not reach is reported with MTurk's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from markets.mturk.client import MTurkClient
from markets.mturk.publish import marketplace_name
from markets.mturk.store import mturk_assignments, study_hit_ids
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event

SUBJECT_MAX = 200
TEXT_MAX = 4096
WORKERS_PER_CALL = 100
REVIEWED = ("Approved", "Rejected")


class NotifyRefused(ValueError):
    """The message or the recipients cannot be sent as given."""


@dataclass
class NotifyReport:
    recipients: list[str]
    calls: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # worker, code, message

    @property
    def delivered(self) -> int:
        return len(self.recipients) - len(self.failed)


def check_message(subject: str, text: str) -> None:
    if not subject.strip() or len(subject) > SUBJECT_MAX:
        raise NotifyRefused(f"--subject must be 1 to {SUBJECT_MAX} characters, got {len(subject)}")
    if not text.strip() or len(text) > TEXT_MAX:
        raise NotifyRefused(f"the message must be 1 to {TEXT_MAX} characters, got {len(text)}")


def notify(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    study_slug: str,
    subject: str,
    text: str,
    worker_ids: Sequence[str] = (),
    all_reviewed: bool = False,
) -> NotifyReport:
    check_message(subject, text)
    if bool(worker_ids) == all_reviewed:
        raise NotifyRefused("name workers (--worker ID ...) or pass --all-reviewed")
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        hits = [
            hit for hit, box in study_hit_ids(session, study_id=study.id).items()
            if box == client.sandbox
        ]  # fmt: skip
        assignments = mturk_assignments(session, hit_ids=hits).values()
    workers = {a.worker_external_id: a.status for a in assignments}
    if worker_ids:
        strangers = [w for w in worker_ids if w not in workers]
        if strangers:
            raise NotifyRefused(
                "not workers of this study on this marketplace (run `mturk sync` first?): "
                + ", ".join(strangers)
            )
        recipients = list(dict.fromkeys(worker_ids))
    else:
        recipients = sorted(w for w, status in workers.items() if status in REVIEWED)
    report = NotifyReport(recipients)
    for start in range(0, len(recipients), WORKERS_PER_CALL):
        batch = recipients[start : start + WORKERS_PER_CALL]
        failures = client.notify_workers(subject=subject, text=text, worker_ids=batch)
        report.calls += 1
        report.failed += [(f.worker_id, f.code, f.message) for f in failures]
    with sessions() as session:
        begin_write(session)
        record_event(
            session,
            study_id=study.id,
            kind="mturk_notified",
            detail={
                "subject": subject,
                "recipients": len(recipients),
                "failed": [worker for worker, _, _ in report.failed],
                "marketplace": marketplace_name(client.sandbox),
            },
        )
        session.commit()
    return report
