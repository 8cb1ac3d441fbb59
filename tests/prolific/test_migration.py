"""Revision 0003 (Prolific) on a database with a study in it: the upgrade keeps every row
(on SQLite, rebuilding `workers` with foreign keys on used to delete all allocations and
labels), and the downgrade refuses while Prolific participants' work is there."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import func, select, text

from study_server.db.migrate import alembic_config, head_revision, upgrade
from study_server.db.models import Allocation, Label, Worker, WorkerSource
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import forget_protocol_records, import_study, invite
from tests.server.flow import lab_accept, submit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database_url(request, database_factory):
    return database_factory(request.param)


def _counts(url: str) -> tuple[int, int, int]:
    session = session_for(url)
    try:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Worker, Allocation, Label)
        )
    finally:
        session.close()


def test_upgrading_to_0003_keeps_the_studys_work(
    own_database_url, small_bundle, live_server_factory
):
    url = own_database_url
    import_study(url, small_bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(url))
    with server.client() as web:
        (code,) = invite(url, "ours-fc", 1)
        accepted = lab_accept(web, "ours-fc", code=code).json()
        assert (
            submit(web, accepted, code=code, labels=[1] * accepted["num_items"]).status_code == 200
        )
    server.stop()
    before = _counts(url)
    assert before == (1, 1, 5)
    forget_protocol_records(url)  # work as it was stored before 0005 (0005 refuses to drop them)
    command.downgrade(alembic_config(url), "0002")
    assert _counts_raw(url) == before
    upgrade(url)
    assert _counts(url) == before
    session = session_for(url)
    try:
        assert session.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
    finally:
        session.close()


def _counts_raw(url: str) -> tuple[int, int, int]:
    session = session_for(url)
    try:
        return tuple(
            session.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("workers", "allocations", "labels")
        )
    finally:
        session.close()


def test_the_downgrade_refuses_while_prolific_work_is_stored(own_database_url):
    session = session_for(own_database_url)
    try:
        session.add(Worker(source=WorkerSource.prolific, external_id="5e" + "0" * 22))
        session.commit()
    finally:
        session.close()
    with pytest.raises(RuntimeError, match="1 Prolific participant"):
        command.downgrade(alembic_config(own_database_url), "0002")
    session = session_for(own_database_url)
    try:
        # 0003's own downgrade refused: PostgreSQL rolls the whole downgrade back (its DDL is
        # transactional); SQLite keeps the revisions above 0003 that came down before it.
        version = session.scalar(text("SELECT version_num FROM alembic_version"))
        assert version in {"0003", head_revision()}
        assert session.scalar(select(func.count()).select_from(Worker)) == 1
    finally:
        session.close()
