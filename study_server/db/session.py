"""Engines and sessions from a database URL: SQLite (embedded default) or PostgreSQL (psycopg 3).

Two backends with different locking need one rule for writes that must not race (allocating
an assignment, storing a submission):

- PostgreSQL: row locks (`SELECT ... FOR UPDATE [SKIP LOCKED]`) taken by the operations
  themselves, plus the schema's unique constraints as the last word.
- SQLite: one writer at a time. A deferred transaction that reads and then writes can fail
  with "database is locked" when another writer got in between, and no busy timeout helps
  then. So write operations start their transaction with `BEGIN IMMEDIATE` (see
  `begin_write`), which takes the write lock up front and waits for it (busy_timeout).

pysqlite's own transaction handling is switched off so that these BEGINs are ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from study_server.db.rendered import Database

# How long a SQLite writer waits for the lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN_OPTION = "advcritic_sqlite_begin"


def normalize_url(url: str) -> str:
    """The URL with the psycopg 3 driver named for PostgreSQL.

    `postgresql://` alone means psycopg2 to SQLAlchemy, which this project does not install;
    `postgres://` is what many hosting services hand out.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_db_engine(url: str, *, pool_size: int = 10, max_overflow: int = 30) -> Engine:
    """An engine for `url`, configured for concurrent web requests on either backend."""
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine, in_memory=make_url(url).database in (None, "", ":memory:"))
        return engine
    # No pre-ping (a round trip per request); a connection dropped by a database restart fails
    # one request and SQLAlchemy then renews the whole pool.
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            # WAL: readers never wait for the writer, so pages keep loading during a submit.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: handlers build their response from objects after the commit.
    return sessionmaker(bind=engine, expire_on_commit=False)


def begin_write(session: Session | Database) -> None:
    """Start the session's transaction as a writer (BEGIN IMMEDIATE on SQLite).

    Must be the first thing a write operation does in its transaction: a transaction that
    has already read cannot be upgraded safely on SQLite, so that is refused loudly. A bare
    driver connection (PostgreSQL, `rendered.DriverStatements`) needs nothing: there the
    operations lock the rows that decide.
    """
    if not isinstance(session, Session):
        return
    if session.in_transaction():
        raise RuntimeError("begin_write must start the transaction; commit or roll back first")
    session.connection(execution_options={_SQLITE_BEGIN_OPTION: "IMMEDIATE"})


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (BEGIN IMMEDIATE on SQLite), committed on
    success: for one Core statement on a hot path, without a Session's bookkeeping."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for a command-line job: committed on success, rolled back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
