"""The statements awaited on the event loop (PostgreSQL): rendered from the same SQLAlchemy
expression, with the same SQL and the same converted parameters that SQLAlchemy sends, and
each one committed on its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from psycopg import OperationalError
from sqlalchemy import event, func, insert, literal, select

from study_server.db.loop_statements import LoopDatabase
from study_server.db.models import Event, WorkerSource
from study_server.db.rendered import RenderedStatement
from study_server.db.session import create_db_engine
from study_server.operations import (
    LabelInput,
    WorkerRef,
    draft_values,
    save_draft,
    save_draft_statement,
)

pytestmark = pytest.mark.postgres


def test_a_statement_is_sent_as_sqlalchemy_would_send_it(postgres_database_url):
    """Enums become their names, `UTCDateTime` its UTC value, constants are filled in."""
    engine = create_db_engine(postgres_database_url)
    values = draft_values(
        assignment_public_id="nobody-holds-this",
        worker=WorkerRef(WorkerSource.mturk, "AW1"),
        mturk_assignment_id="A1",
        item=LabelInput(position=3, label=7, response_ms=900),
        now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
    )
    sent: list[tuple[str, dict]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, dict(parameters)))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.begin() as connection:
            assert save_draft(connection, values) is False  # no such hold: nothing written
    finally:
        event.remove(engine, "before_cursor_execute", record)
        engine.dispose()
    ((sql, parameters),) = sent
    rendered = RenderedStatement(save_draft_statement("postgresql"), engine.dialect)
    assert rendered.sql == sql
    assert rendered.parameters(values) == parameters
    assert parameters["source"] == "mturk" and parameters["status_1"] == "active"


def test_each_statement_on_the_loop_is_committed_and_its_row_returned(postgres_database_url):
    engine = create_db_engine(postgres_database_url)
    statement = (
        insert(Event).values(kind="loop-test", detail={"n": 1}).returning(Event.id, Event.kind)
    )

    async def run() -> list[tuple]:
        database = LoopDatabase(engine, size=2)
        await database.open()
        try:
            return await database.rows(statement, {})
        finally:
            await database.close()

    try:
        (row,) = asyncio.run(run())
        assert row[1] == "loop-test"
        with engine.connect() as other:  # another connection sees it: committed
            assert other.scalar(select(Event.kind).where(Event.id == row[0])) == "loop-test"
    finally:
        engine.dispose()


def test_an_upsert_survives_a_connection_the_database_ended_and_nothing_else_is_repeated(
    postgres_database_url,
):
    """After a database restart every pooled connection is broken: a repeatable statement
    (the label upsert) runs again on a fresh one; any other fails, as it would elsewhere."""
    engine = create_db_engine(postgres_database_url)
    backend_pid = select(func.pg_backend_pid())
    one = select(literal(1))

    async def end_sessions(database: LoopDatabase) -> None:
        ((pid,),) = await database.rows(backend_pid, {})
        with engine.connect() as admin:  # terminate, and wait until the backend is gone
            assert admin.scalar(select(func.pg_terminate_backend(pid, 5000))) is True

    async def run() -> None:
        database = LoopDatabase(engine, size=1)  # one connection: the one ended is the next used
        await database.open()
        try:
            await end_sessions(database)
            assert await database.rows(one, {}, repeatable=True) == [(1,)]
            await end_sessions(database)
            with pytest.raises(OperationalError):
                await database.rows(one, {})
            assert await database.rows(one, {}) == [(1,)]  # the broken one was dropped
        finally:
            await database.close()

    try:
        asyncio.run(run())
    finally:
        engine.dispose()
