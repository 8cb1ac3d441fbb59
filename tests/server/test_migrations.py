"""The schema exists only through Alembic, and the migrations match the models on both backends."""

from __future__ import annotations

import re

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


def test_upgrading_to_0005_gives_existing_studies_the_default_protocol(
    own_database_url, small_bundle, capsys
):
    """A study imported before 0005 keeps working: it gets the built-in texts (with their
    placeholders) and the default policy as version 1; its old submissions stay unjudged until
    `study-server protocol attention` judges them."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select, text

    from study_server.allocation import AllocationPolicy
    from study_server.attention import current_policy
    from study_server.db.models import Allocation, AttentionPolicy, ProtocolText, TextKind
    from study_server.invitations import find_invite
    from study_server.operations import Claimant, LabelInput, WorkerRef, accept, submit
    from study_server.protocol_texts import default_text
    from testkit.databases import session_for
    from testkit.studies import forget_protocol_records, import_study, invite

    url = own_database_url
    import_study(url, small_bundle, items_per_assignment=5)
    (code,) = invite(url, "ours-fc")
    session = session_for(url)
    try:
        invitation = find_invite(session, code)
        session.rollback()
        consent = default_text(TextKind.consent).sha256
        now = datetime.now(UTC)
        accepted = accept(
            session=session,
            study_slug="ours-fc",
            claimant=Claimant(WorkerRef.of_invite(invitation)),
            consent_sha256=consent,
            now=now,
            policy=AllocationPolicy(timeout=timedelta(minutes=20)),
            invite=invitation,
        )
        submit(
            session=session,
            assignment_public_id=accepted.assignment_public_id,
            worker=WorkerRef.of_invite(invitation),
            mturk_assignment_id=None,
            labels=[LabelInput(p, 3, 900) for p in range(accepted.num_items)],
            now=now,
        )
    finally:
        session.close()
    forget_protocol_records(url)  # as stored before 0005
    command.downgrade(alembic_config(url), "0004")
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM labels")).scalar_one() == 5
    finally:
        engine.dispose()
    upgrade(url)
    assert _drift(url) == []
    session = session_for(url)
    try:
        texts = session.scalars(select(ProtocolText).order_by(ProtocolText.id)).all()
        assert [(t.kind, t.version, t.source_name) for t in texts] == [
            (TextKind.consent, 1, None),
            (TextKind.debrief, 1, None),
        ]
        assert texts[0].sha256 == default_text(TextKind.consent).sha256
        (policy,) = session.scalars(select(AttentionPolicy)).all()
        assert (policy.version, policy.min_catch_accuracy, policy.origin) == (1, 0.5, "default")
        assert current_policy(session, study_id=policy.study_id) is not None
        allocation = session.scalar(select(Allocation))
        assert allocation.attention is None and allocation.consent_sha256 is None
    finally:
        session.close()
    argv = ["protocol", "attention", "ours-fc", "--min-catch-accuracy", "0.5"]
    assert main([*argv, "--database-url", url]) == 0
    assert "re-judged 1 submission(s): not_applicable 1 (none -> not_applicable: 1)" in (
        capsys.readouterr().out
    )  # the small bundle has no catch trials


@pytest.mark.parametrize("what", ["consent", "experiment"])
def test_the_0005_downgrade_refuses_what_0004_cannot_keep(own_database_url, small_bundle, what):
    from sqlalchemy import text

    from testkit.studies import import_study, make_experiment

    url = own_database_url
    import_study(url, small_bundle, items_per_assignment=5)
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            if what == "consent":
                connection.execute(
                    text("INSERT INTO workers (id, source, external_id) VALUES (1, 'mturk', 'W1')")
                )
                connection.execute(
                    text(
                        "INSERT INTO allocations (study_id, assignment_id, worker_id, status, "
                        "allocated_at, expires_at, verification, consent_sha256) SELECT "
                        "study_id, id, 1, 'active', :t, :t, 'unverified', :sha FROM assignments "
                        "LIMIT 1"
                    ),
                    {"t": "2026-01-01 00:00:00+00:00", "sha": "ab" * 32},
                )
    finally:
        engine.dispose()
    if what == "experiment":
        make_experiment(url, "mnist-fc", ["ours-fc"])
    expected = {
        "consent": "1 allocation(s) record the consent agreed to",
        "experiment": "1 experiment(s) group studies",
    }[what]
    command.downgrade(alembic_config(url), "0005")  # 0006 holds nothing here: it comes down
    with pytest.raises(RuntimeError, match=re.escape(f"cannot downgrade below 0005: {expected}")):
        command.downgrade(alembic_config(url), "0004")
    assert current_revision(url) == "0005"  # nothing more came down


@pytest.mark.parametrize("what", ["replicas", "interleaved"])
def test_the_0006_downgrade_refuses_what_0005_cannot_keep(own_database_url, small_bundle, what):
    from sqlalchemy import text

    from testkit.studies import import_study

    url = own_database_url
    import_study(url, small_bundle, items_per_assignment=5, labels_per_image=2)
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            if what == "interleaved":
                connection.execute(text("UPDATE studies SET labels_per_image = 1"))
                connection.execute(text("UPDATE stimuli SET defense = 'ours'"))
    finally:
        engine.dispose()
    expected = {
        "replicas": "1 study(ies) ask for several labels per image",
        "interleaved": "15 stimul(i) of interleaved studies carry their own defense",
    }[what]
    with pytest.raises(RuntimeError, match=re.escape(f"cannot downgrade below 0006: {expected}")):
        command.downgrade(alembic_config(url), "0005")
    assert current_revision(url) == head_revision()  # nothing came down
