"""The schema exists only through Alembic, and the migrations match the models on both backends."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from study_server.cli import main
from study_server.db.migrate import alembic_config, current_revision, head_revision, upgrade
from study_server.db.models import Base
from study_server.db.session import create_db_engine


def _drift(url: str) -> list:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database_url):
    assert current_revision(database_url) == head_revision()
    assert _drift(database_url) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database_url(request, database_factory):
    """A database of its own: this test takes the schema down, which others must not see."""
    return database_factory(request.param)


def test_downgrade_to_nothing_and_back(own_database_url):
    database_url = own_database_url
    command.downgrade(alembic_config(database_url), "base")
    engine = create_db_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(database_url)
    assert _drift(database_url) == []


def test_migrate_command_creates_the_schema(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert current_revision(url) is None
    assert main(["migrate", "--database-url", url]) == 0
    assert f"revision {head_revision()} (head)" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url]) == 0  # again: nothing to do, no error
    assert _drift(url) == []
