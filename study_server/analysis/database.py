"""Opening the study database from an offline tool (`analyze-study`, `mturk`).

These tools never create tables: a database that was not migrated (a typo in the URL makes
a fresh empty SQLite file) must be a clear error, not an empty Table 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from study_server.db.models import Study
from study_server.db.session import create_db_engine, create_session_factory, is_sqlite


class DatabaseNotReady(Exception):
    """The URL is malformed, the server unreachable, or the schema was never migrated."""


def _describe(url: str) -> str:
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
                    f"no SQLite database at {path} (check --database-url / DATABASE_URL)"
                )
        engine = create_db_engine(url)
    except ArgumentError as error:
        raise DatabaseNotReady(f"not a database URL: {_describe(url)} ({error})") from error
    try:
        with engine.connect() as connection:
            has_studies = inspect(connection).has_table(Study.__tablename__)
    except OperationalError as error:
        engine.dispose()
        raise DatabaseNotReady(f"cannot open {_describe(url)}: {error.orig}") from error
    if not has_studies:
        engine.dispose()
        raise DatabaseNotReady(
            f"{_describe(url)} has no study tables; "
            "run `study-server migrate` and import a study first"
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
