"""A study in a database, the way the commands make one (import) or publish one (HIT rows)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from study_server.db.models import MTurkHit, Study
from study_server.importer import ImportResult, import_bundle
from study_server.invitations import mint
from testkit.databases import session_for


def import_study(
    url: str,
    bundle: Path,
    *,
    items_per_assignment: int = 5,
    slug: str | None = None,
    split_seed: int = 0,
) -> ImportResult:
    session = session_for(url)
    try:
        return import_bundle(
            session=session,
            bundle_path=bundle,
            slug=slug,
            items_per_assignment=items_per_assignment,
            split_seed=split_seed,
        )
    finally:
        session.close()


def register_hits(url: str, slug: str, hit_ids: Sequence[str], *, sandbox: bool = True) -> None:
    session = session_for(url)
    try:
        study_id = session.scalars(select(Study.id).where(Study.slug == slug)).one()
        for slot, hit_id in enumerate(hit_ids):
            session.add(
                MTurkHit(
                    study_id=study_id,
                    slot=slot,
                    sandbox=sandbox,
                    hit_id=hit_id,
                    hit_type_id="HITTYPE-TEST",
                    unique_request_token=f"{slug}-{slot}-{hit_id}",
                )
            )
        session.commit()
    finally:
        session.close()


def invite(url: str, slug: str, n: int = 1) -> list[str]:
    """`n` lab invitation codes for the study, as `study-server invite` mints them."""
    session = session_for(url)
    try:
        return mint(session, study_slug=slug, n=n)
    finally:
        session.close()
