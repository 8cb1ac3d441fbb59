"""The study database as the `prolific` command sees it: the published study, the bound
sessions, the submissions Prolific listed. Keyword-only helpers over the shared schema
(study_server/db/models.py); the tables are made by Alembic only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    ProlificSession,
    ProlificStudy,
    ProlificSubmission,
    Worker,
    WorkerSource,
)


def published_study(session: Session, *, study_id: int) -> ProlificStudy | None:
    return session.scalar(select(ProlificStudy).where(ProlificStudy.study_id == study_id))


def listed_submissions(
    session: Session, *, prolific_study_id: str
) -> dict[str, ProlificSubmission]:
    """What the last sync stored of Prolific's list, by submission (session) id."""
    rows = session.scalars(
        select(ProlificSubmission).where(ProlificSubmission.prolific_study_id == prolific_study_id)
    )
    return {row.submission_id: row for row in rows}


@dataclass(frozen=True)
class ProlificWork:
    """A Prolific participant's allocation in the study, with the session it is bound to."""

    allocation: Allocation
    participant_id: str
    session_id: str | None


def prolific_work(session: Session, *, study_id: int) -> list[ProlificWork]:
    """The study's allocations made through Prolific, oldest first."""
    rows = session.execute(
        select(Allocation, Worker.external_id, ProlificSession.session_id)
        .join(Worker, Worker.id == Allocation.worker_id)
        .outerjoin(
            ProlificSession,
            (ProlificSession.study_id == Allocation.study_id)
            & (ProlificSession.participant_id == Worker.external_id),
        )
        .where(Allocation.study_id == study_id, Worker.source == WorkerSource.prolific)
        .order_by(Allocation.id)
    )
    return [ProlificWork(allocation, pid, sid) for allocation, pid, sid in rows]


def participants_of(session: Session, *, study_ids: list[int]) -> set[str]:
    """Everyone Prolific listed in these studies' Prolific studies (as of the last sync)."""
    if not study_ids:
        return set()
    rows = session.scalars(
        select(ProlificSubmission.participant_id)
        .join(
            ProlificStudy,
            ProlificStudy.prolific_study_id == ProlificSubmission.prolific_study_id,
        )
        .where(ProlificStudy.study_id.in_(study_ids))
    )
    return set(rows)
