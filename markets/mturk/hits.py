"""`mturk status` and `mturk expire`: where a study's HITs stand, and taking them down.

Status joins three views of the study: the HITs as MTurk reports them now (when online),
the assignments as of the last `mturk sync`, and the server's own allocations with their
verification, so a requester can see at a glance what is left to sync, approve or flag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from markets.mturk.client import MTurkClient
from markets.mturk.publish import marketplace_name
from markets.mturk.records import Hit
from markets.mturk.store import mturk_assignments, published_hits
from study_server.db.models import Allocation, MTurkHit
from study_server.db.session import begin_write
from study_server.db.store import assignment_count, find_study, record_event, utc_now


@dataclass
class StatusReport:
    study_slug: str
    marketplace: str
    assignments: int
    hits: int
    hit_statuses: Counter[str] = field(default_factory=Counter)
    mturk_assignments: Counter[str] = field(default_factory=Counter)
    allocations: Counter[str] = field(default_factory=Counter)
    verification: Counter[str] = field(default_factory=Counter)
    refreshed: bool = False
    hit_group_id: str | None = None


def refresh_hits(
    sessions: sessionmaker[Session], client: MTurkClient, rows: dict[str, MTurkHit]
) -> dict[str, Hit]:
    """Store MTurk's current status and expiry of the given HITs; what MTurk listed, by id."""
    listed = {hit.hit_id: hit for hit in client.iter_hits() if hit.hit_id in rows}
    with sessions() as session:
        begin_write(session)
        for hit_id, hit in listed.items():
            row = session.merge(rows[hit_id])
            row.status = hit.status
            row.expires_at = hit.expires_at
        session.commit()
    return listed


def status(
    *, sessions: sessionmaker[Session], study_slug: str, sandbox: bool, client: MTurkClient | None
) -> StatusReport:
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        hits = published_hits(session, study_id=study.id, sandbox=sandbox)
    rows = {row.hit_id: row for row in hits.values()}
    listed = refresh_hits(sessions, client, rows) if client is not None and rows else {}
    group = next((hit.hit_group_id for hit in listed.values() if hit.hit_group_id), None)
    with sessions() as session:
        report = StatusReport(
            study_slug=study.slug,
            marketplace=marketplace_name(sandbox),
            assignments=assignment_count(session, study_id=study.id),
            hits=len(rows),
            refreshed=client is not None,
            hit_group_id=group,
        )
        report.hit_statuses.update(
            session.scalars(select(MTurkHit.status).where(MTurkHit.hit_id.in_(list(rows))))
        )
        report.mturk_assignments.update(
            row.status for row in mturk_assignments(session, hit_ids=list(rows)).values()
        )
        for state, verification, count in session.execute(
            select(Allocation.status, Allocation.verification, func.count())
            .where(Allocation.study_id == study.id)
            .group_by(Allocation.status, Allocation.verification)
        ):
            report.allocations[state.value] += count
            if state.value == "submitted":
                report.verification[verification.value] += count
    return report


def expire(*, sessions: sessionmaker[Session], client: MTurkClient, study_slug: str) -> list[str]:
    """Expire every HIT of the study on the client's marketplace that is still open; their ids."""
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        hits = published_hits(session, study_id=study.id, sandbox=client.sandbox)
    now = utc_now()
    open_hits = [row for row in hits.values() if row.expires_at is None or row.expires_at > now]
    for row in open_hits:
        client.expire_hit(row.hit_id)
    refresh_hits(sessions, client, {row.hit_id: row for row in hits.values()})
    if open_hits:
        with sessions() as session:
            begin_write(session)
            record_event(
                session,
                study_id=study.id,
                kind="mturk_expired",
                detail={
                    "marketplace": marketplace_name(client.sandbox),
                    "hits": [row.hit_id for row in open_hits],
                },
            )
            session.commit()
    return [row.hit_id for row in open_hits]
