"""The study database as the `mturk` command sees it: studies, published HITs, MTurk's reports.

Keyword-only helpers over the shared schema (study_server/db/models.py); the tables are made
by Alembic only. Writers commit per unit of work, so a crash loses at most the HIT being
created, which `mturk publish` finds again on the next run.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    MTurkAssignment,
    MTurkHit,
    Worker,
    WorkerSource,
)


def published_hits(session: Session, *, study_id: int, sandbox: bool) -> dict[int, MTurkHit]:
    """The HITs already published for the study on this marketplace, by slot."""
    rows = session.scalars(
        select(MTurkHit).where(MTurkHit.study_id == study_id, MTurkHit.sandbox == sandbox)
    )
    return {row.slot: row for row in rows}


def study_hit_ids(session: Session, *, study_id: int) -> dict[str, bool]:
    """Every HIT id published for the study, with whether it is a sandbox HIT."""
    rows = session.execute(
        select(MTurkHit.hit_id, MTurkHit.sandbox).where(MTurkHit.study_id == study_id)
    )
    return {hit_id: sandbox for hit_id, sandbox in rows}


def mturk_assignments(session: Session, *, hit_ids: list[str]) -> dict[str, MTurkAssignment]:
    if not hit_ids:
        return {}
    rows = session.scalars(select(MTurkAssignment).where(MTurkAssignment.hit_id.in_(hit_ids)))
    return {row.mturk_assignment_id: row for row in rows}


def mturk_allocations(session: Session, *, study_id: int) -> list[tuple[Allocation, str]]:
    """The study's allocations made through MTurk, each with its worker's MTurk id."""
    rows = session.execute(
        select(Allocation, Worker.external_id)
        .join(Worker, Worker.id == Allocation.worker_id)
        .where(Allocation.study_id == study_id, Worker.source == WorkerSource.mturk)
        .order_by(Allocation.id)
    )
    return [(allocation, worker_id) for allocation, worker_id in rows]
