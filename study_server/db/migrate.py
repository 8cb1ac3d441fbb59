"""Run the Alembic migrations shipped with the package, from any working folder."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from study_server.db.session import create_db_engine


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the installed `migrations` package and `database_url`."""
    config = Config()
    # __path__, not __file__: an editable install may map the package as a namespace.
    config.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "the migrations package has no revision"
    return head


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
