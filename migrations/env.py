"""Alembic environment: the URL comes from settings (DATABASE_URL), or from the caller.

`study-server migrate --database-url ...` and the test fixtures hand a URL over through
`config.attributes["database_url"]`; `alembic upgrade head` run by hand reads settings.
SQLite runs in batch mode, since it cannot ALTER most things in place. A batch copies a
table, drops the old one and renames the copy; with foreign keys on, that DROP would
cascade into every child table (dropping `workers` deletes all allocations and labels), so
migrations run with SQLite's foreign keys off, and are checked afterwards.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from study_server.db.models import Base
from study_server.db.session import create_db_engine, is_sqlite
from study_server.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    url = _database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            if is_sqlite(url):
                _sqlite_foreign_keys(connection, on=False)
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=is_sqlite(url),
            )
            with context.begin_transaction():
                context.run_migrations()
            if is_sqlite(url):
                _sqlite_foreign_keys(connection, on=True)
    finally:
        engine.dispose()


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign keys on the raw connection, outside any transaction (SQLite
    ignores the pragma inside one); switching back on first checks that none is broken."""
    raw = connection.connection.dbapi_connection
    if on:
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows with broken foreign keys: {broken[:5]}")
    raw.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
