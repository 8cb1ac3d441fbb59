"""`prolific status`, `pause`, `resume`, `stop`: where a study stands on Prolific and on the
server, and taking it down.

Status joins three views: the Prolific study as Prolific reports it now (when online), the
submissions as of the last `prolific sync`, and the server's own allocations with their
verification, so the researcher sees at a glance what is left to sync, approve or check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from markets.prolific.client import ProlificClient
from markets.prolific.models import StudyAction
from markets.prolific.store import listed_submissions
from markets.prolific.sync import require_published
from study_server.db.models import Allocation, Event, ProlificBonus
from study_server.db.session import begin_write
from study_server.db.store import assignment_count, record_event


@dataclass
class StatusReport:
    study_slug: str
    prolific_study_id: str
    status: str
    assignments: int
    places: int
    places_taken: int | None = None  # from Prolific, when online
    submissions: Counter[str] = field(default_factory=Counter)  # as of the last sync
    allocations: Counter[str] = field(default_factory=Counter)
    verification: Counter[str] = field(default_factory=Counter)
    returned_to_pool: int = 0
    bonuses: Counter[str] = field(default_factory=Counter)  # bulk bonus status -> count
    unsettled_bonuses: list[str] = field(default_factory=list)  # `paying`: check in the app
    refreshed: bool = False


def status(
    *, sessions: sessionmaker[Session], client: ProlificClient | None, study_slug: str
) -> StatusReport:
    with sessions() as session:
        study_id, row = require_published(session, study_slug)
    remote = client.get_study(row.prolific_study_id) if client is not None else None
    with sessions() as session:
        if remote is not None:
            begin_write(session)
            session.merge(row).status = remote.status
            session.commit()
        report = StatusReport(
            study_slug=study_slug,
            prolific_study_id=row.prolific_study_id,
            status=remote.status if remote else row.status,
            assignments=assignment_count(session, study_id=study_id),
            places=remote.total_available_places if remote else row.places,
            places_taken=remote.places_taken if remote else None,
            refreshed=remote is not None,
        )
        report.submissions.update(
            sub.status
            for sub in listed_submissions(session, prolific_study_id=row.prolific_study_id).values()
        )
        for state, verification, count in session.execute(
            select(Allocation.status, Allocation.verification, func.count())
            .where(Allocation.study_id == study_id)
            .group_by(Allocation.status, Allocation.verification)
        ):
            report.allocations[state.value] += count
            if state.value == "submitted":
                report.verification[verification.value] += count
        report.returned_to_pool = (
            session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.study_id == study_id, Event.kind == "submission_flagged")
            )
            or 0
        )
        for bulk_id, state in session.execute(
            select(ProlificBonus.bulk_id, ProlificBonus.status).where(
                ProlificBonus.study_id == study_id
            )
        ):
            report.bonuses[state] += 1
            if state == "paying":
                report.unsettled_bonuses.append(bulk_id)
    return report


def transition(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    study_slug: str,
    action: StudyAction,
) -> str:
    """PAUSE, START (resume) or STOP the study on Prolific; its status afterwards."""
    with sessions() as session:
        study_id, row = require_published(session, study_slug)
    remote = client.transition_study(row.prolific_study_id, action)
    with sessions() as session:
        begin_write(session)
        session.merge(row).status = remote.status
        record_event(
            session,
            study_id=study_id,
            kind=f"prolific_{action.lower()}",
            detail={"prolific_study": row.prolific_study_id, "status": remote.status},
        )
        session.commit()
    return remote.status
