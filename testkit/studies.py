"""A study in a database, the way the commands make one (import) or publish one (HIT rows)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select, update

from study_server import experiments
from study_server.attention import PolicySpec
from study_server.db.models import Allocation, MTurkHit, Study, TextKind
from study_server.db.session import begin_write
from study_server.importer import ImportResult, Protocol, import_bundle
from study_server.invitations import mint
from study_server.protocol_texts import attach_files, require_text
from testkit.databases import session_for


def import_study(
    url: str,
    bundle: Path,
    *,
    items_per_assignment: int = 5,
    slug: str | None = None,
    split_seed: int = 0,
    protocol: Protocol | None = None,
    experiment: str | None = None,
    labels_per_image: int = 1,
) -> ImportResult:
    session = session_for(url)
    try:
        return import_bundle(
            session=session,
            bundle_path=bundle,
            slug=slug,
            items_per_assignment=items_per_assignment,
            split_seed=split_seed,
            protocol=protocol,
            experiment=experiment,
            labels_per_image=labels_per_image,
        )
    finally:
        session.close()


# A study whose attention policy judges nothing: every submission is not_applicable.
NO_ATTENTION_POLICY = Protocol(policy=PolicySpec(None, None), policy_origin="import")


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


def make_experiment(url: str, slug: str, study_slugs: Sequence[str]) -> None:
    """Group studies into an experiment, as `study-server experiment create` does."""
    session = session_for(url)
    try:
        begin_write(session)
        experiments.create(session, slug=slug, study_slugs=study_slugs)
        session.commit()
    finally:
        session.close()


def consent_sha256(url: str, slug: str) -> str:
    """The SHA-256 of the study's current consent text (what an accept must carry)."""
    session = session_for(url)
    try:
        study_id = session.scalars(select(Study.id).where(Study.slug == slug)).one()
        return require_text(session, study_id=study_id, kind=TextKind.consent).sha256
    finally:
        session.close()


def attach_texts(
    url: str, slug: str, *, consent: Path | None = None, debrief: Path | None = None
) -> None:
    """New consent/debrief versions from files, as `study-server protocol attach` makes them."""
    files = {
        kind: path
        for kind, path in ((TextKind.consent, consent), (TextKind.debrief, debrief))
        if path is not None
    }
    session = session_for(url)
    try:
        attach_files(session, study_slugs=[slug], files=files)
    finally:
        session.close()


LAB_CONSENT = """# Consent to take part

**Labelling digits** (Example University, ethics approval EX-2026-001).

Who runs it: Dr A. Researcher, Example University. Purpose: how people see slightly changed
images. About 6 minutes; $0.50. No risks beyond everyday computer use. Voluntary: stop at
any time. We keep your answers and your worker ID on university servers for 5 years.
Contact: a.researcher@example.org.
"""
LAB_DEBRIEF = """# Thank you

The images were changed by a computer program. Questions: a.researcher@example.org.
"""


def attach_lab_texts(url: str, slug: str) -> None:
    """Texts a lab has edited (no placeholders left), as a live study needs them."""
    with tempfile.TemporaryDirectory() as folder:
        consent, debrief = Path(folder, "consent.md"), Path(folder, "debrief.md")
        consent.write_text(LAB_CONSENT, encoding="utf-8")
        debrief.write_text(LAB_DEBRIEF, encoding="utf-8")
        attach_texts(url, slug, consent=consent, debrief=debrief)


def forget_protocol_records(url: str) -> None:
    """Erase what 0005 added to allocations (consent, debrief, attention): the state of work
    stored before it, for tests of older migrations (0005's downgrade refuses to drop them)."""
    session = session_for(url)
    try:
        session.execute(
            update(Allocation).values(
                consent_text_id=None,
                consent_sha256=None,
                consented_at=None,
                debrief_text_id=None,
                debriefed_at=None,
                attention=None,
                attention_detail=None,
                attention_policy_id=None,
            )
        )
        session.commit()
    finally:
        session.close()
