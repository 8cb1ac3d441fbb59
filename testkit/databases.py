"""Fresh, migrated study databases on SQLite or the local PostgreSQL, made fast and dropped
together: PostgreSQL databases are cloned from a template migrated once (CREATE DATABASE ...
TEMPLATE), SQLite files are copied from a migrated one."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.orm import Session

from study_server.db.migrate import upgrade
from study_server.db.models import Base
from study_server.db.session import create_db_engine, create_session_factory

POSTGRES_HOST = os.environ.get("ADVCRITIC_TEST_PGHOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("ADVCRITIC_TEST_PGPORT", "5432"))
POSTGRES_USER = os.environ.get("ADVCRITIC_TEST_PGUSER", "postgres")
BACKENDS = ("sqlite", "postgres")


def postgres_url(database: str) -> str:
    return f"postgresql+psycopg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(
            host=POSTGRES_HOST,
            port=POSTGRES_PORT,
            user=POSTGRES_USER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as error:
        raise RuntimeError(
            f"PostgreSQL is needed on {POSTGRES_HOST}:{POSTGRES_PORT} (user {POSTGRES_USER}): "
            f"{error}"
        ) from error


class DatabaseFactory:
    """Makes fresh migrated databases quickly, and drops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"advcritic_t{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._template_pg: str | None = None
        self._template_sqlite: Path | None = None
        self._made_pg: list[str] = []
        self._shared_pg: str | None = None
        self._lock = threading.RLock()

    def __call__(self, backend: str) -> str:
        if backend == "sqlite":
            return self._sqlite()
        if backend == "postgres":
            return self._postgres()
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")

    def _sqlite(self) -> str:
        with self._lock:
            if self._template_sqlite is None:
                template = self.workdir / "template.db"
                upgrade(f"sqlite:///{template}")
                self._template_sqlite = template
            path = self.workdir / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(self._template_sqlite, path)
        return f"sqlite:///{path}"

    def _postgres(self) -> str:
        with self._lock, _admin_connection() as admin:
            if self._template_pg is None:
                template = f"{self.prefix}_template"
                admin.execute(f'CREATE DATABASE "{template}"')
                self._made_pg.append(template)
                upgrade(postgres_url(template))
                self._template_pg = template
            name = f"{self.prefix}_{len(self._made_pg)}"
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template_pg}"')
            self._made_pg.append(name)
        return postgres_url(name)

    def empty_postgres(self) -> str:
        """A new PostgreSQL database with no schema at all (to test the migration itself)."""
        with self._lock, _admin_connection() as admin:
            name = f"{self.prefix}_{len(self._made_pg)}"
            admin.execute(f'CREATE DATABASE "{name}"')
            self._made_pg.append(name)
        return postgres_url(name)

    def reset(self, backend: str) -> str:
        """An empty migrated database: on PostgreSQL one per session, emptied (TRUNCATE) each
        time, since creating and dropping a database costs about half a second there."""
        if backend != "postgres":
            return self(backend)
        with self._lock:
            if self._shared_pg is None:
                self._shared_pg = self._postgres()
            url = self._shared_pg
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with psycopg.connect(
            url.replace("postgresql+psycopg", "postgresql"), autocommit=True
        ) as connection:
            connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        return url

    def drop_all(self) -> None:
        if not self._made_pg:
            return
        with _admin_connection() as admin:
            for name in reversed(self._made_pg):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._made_pg.clear()


def session_for(url: str) -> Session:
    """A session on `url` whose engine is disposed when the session closes."""
    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    session = create_session_factory(engine)()
    original_close = session.close

    def close() -> None:
        original_close()
        engine.dispose()

    session.close = close  # type: ignore[method-assign]
    return session
