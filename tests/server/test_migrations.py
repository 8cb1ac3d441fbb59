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


def test_upgrading_a_database_with_labels_keeps_them(own_database_url):
    """0002 rebuilds `allocations` and `labels` on SQLite; nothing may cascade away, and lab
    work from before invitations stays `not_applicable` (Table 2 no longer counts it)."""
    from sqlalchemy import text

    url = own_database_url
    command.downgrade(alembic_config(url), "0001")
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO studies (id, slug, defense, network, dataset, seed, "
                    "bundle_version, manifest_sha256, checkpoint_sha256, num_classes, "
                    "class_names, attack, items_per_assignment, split_seed) VALUES (1, 's', "
                    "'ours', 'fc', 'mnist', 0, 1, 'm', 'c', 10, '[]', '{}', 1, 0)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO stimuli (id, study_id, stimulus_key, kind, source_index, "
                    "original_label, prediction_original, confidence_original, "
                    "prediction_adversarial, confidence_adversarial, perturbation_l2, rho, "
                    "success, reached_confidence, iterations, image_png, image_sha256) VALUES "
                    "(1, 1, 'adv-0', 'adversarial', 0, 1, 1, 0.9, 7, 0.9, 1.0, 0.1, true, true, "
                    "5, :png, 'h')"
                ),
                {"png": b"png"},
            )
            connection.execute(
                text(
                    "INSERT INTO assignments (id, study_id, ordinal, public_id, status) "
                    "VALUES (1, 1, 0, 'pub', 'submitted')"
                )
            )
            connection.execute(text("INSERT INTO assignment_items VALUES (1, 0, 1)"))
            connection.execute(
                text("INSERT INTO workers (id, source, external_id) VALUES (1, 'local', 'lab-1')")
            )
            connection.execute(
                text(
                    "INSERT INTO allocations (id, study_id, assignment_id, worker_id, status, "
                    "allocated_at, expires_at, submitted_at, verification) VALUES (1, 1, 1, 1, "
                    "'submitted', :t, :t, :t, 'not_applicable')"
                ),
                {"t": "2026-01-01 00:00:00+00:00"},
            )
            connection.execute(
                text(
                    "INSERT INTO labels (allocation_id, assignment_id, stimulus_id, worker_id, "
                    "position, label) VALUES (1, 1, 1, 1, 0, 7)"
                )
            )
    finally:
        engine.dispose()
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT label FROM labels")).scalar_one() == 7
            assert (
                connection.execute(text("SELECT verification FROM allocations")).scalar_one()
                == "not_applicable"
            )
    finally:
        engine.dispose()
    assert _drift(url) == []
