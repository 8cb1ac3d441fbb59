"""Alembic environment: the URL comes from settings (DATABASE_URL), or from the caller.

`study-server migrate --database-url ...` and the test fixtures hand a URL over through
`config.attributes["database_url"]`; `alembic upgrade head` run by hand reads settings.
SQLite runs in batch mode, since it cannot ALTER most things in place. Batch mode copies a
table and drops the old one, and with foreign keys on, dropping `allocations` would cascade
into `labels`: so on SQLite the foreign keys are off while migrating (SQLite's own recipe
for altering tables), and `PRAGMA foreign_key_check` must find nothing before the commit.
"""

from __future__ import annotations

from alembic import context

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
    sqlite = is_sqlite(url)
    try:
        with engine.connect() as connection:
            if sqlite:  # outside any transaction, where SQLite honours it
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
