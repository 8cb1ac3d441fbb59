"""Opening the study database from a command (`study-server`, `mturk`, `prolific`,
`analyze-study`).

Only `study-server migrate` creates or changes tables: a database that was not migrated (a
typo in the URL makes a fresh empty SQLite file) or is behind the code's schema must be a
clear error naming the fix, not an empty Table 2 or a crash halfway through a command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from study_server.db.migrate import head_revision
from study_server.db.session import create_db_engine, create_session_factory, is_sqlite


class DatabaseNotReady(Exception):
    """The URL is malformed, the server unreachable, or the schema was never migrated."""


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def open_engine(url: str) -> Engine:
    """An engine on a migrated study database, or `DatabaseNotReady` saying what is wrong."""
    try:
        if is_sqlite(url):
            path = make_url(url).database
            if path and path != ":memory:" and not Path(path).exists():
                raise DatabaseNotReady(
                    f"no SQLite database at {path}: check --database-url / DATABASE_URL, "
                    "or run `study-server migrate` first to create it"
                )
        engine = create_db_engine(url)
    except ArgumentError as error:
        raise DatabaseNotReady(f"not a database URL: {describe_url(url)} ({error})") from error
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as error:
        engine.dispose()
        raise DatabaseNotReady(f"cannot open {describe_url(url)}: {error.orig}") from error
    head = head_revision()
    if revision != head:
        engine.dispose()
        state = "has no study tables" if revision is None else f"is at revision {revision}"
        raise DatabaseNotReady(
            f"{describe_url(url)} {state}, not {head}: run `study-server migrate` first"
        )
    return engine


@contextmanager
def study_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on the study database at `url`, disposed of afterwards."""
    engine = open_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        engine.dispose()
