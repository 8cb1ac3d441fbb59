"""Prolific as a second market: the `prolific` worker source, the Prolific study a study is
published as, each participant's bound session, what Prolific lists, and bulk bonuses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 05:00:00

The downgrade drops the Prolific tables; it refuses to run while Prolific participants'
work is in the database (the `workers` CHECK constraint cannot go back to mturk/local with
their rows present, and deleting them would delete their labels): export first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCE_CHECK = "ck_workers_workersource"


def _set_worker_sources(*sources: str) -> None:
    allowed = ", ".join(f"'{source}'" for source in sources)
    with op.batch_alter_table("workers") as batch:
        batch.drop_constraint(op.f(_SOURCE_CHECK), type_="check")
        batch.create_check_constraint(op.f(_SOURCE_CHECK), sa.text(f"source IN ({allowed})"))


def upgrade() -> None:
    _set_worker_sources("mturk", "local", "prolific")
    op.create_table(
        "prolific_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("prolific_study_id", sa.String(length=24), nullable=False),
        sa.Column("internal_name", sa.String(length=128), nullable=False),
        sa.Column("completion_code", sa.String(length=32), nullable=False),
        sa.Column("external_study_url", sa.Text(), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("reward_minor", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("exclusion_group_id", sa.String(length=24), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_prolific_studies_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prolific_studies")),
        sa.UniqueConstraint("internal_name", name=op.f("uq_prolific_studies_internal_name")),
        sa.UniqueConstraint(
            "prolific_study_id", name=op.f("uq_prolific_studies_prolific_study_id")
        ),
        sa.UniqueConstraint("study_id", name=op.f("uq_prolific_studies_study_id")),
    )
    op.create_table(
        "prolific_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(length=24), nullable=False),
        sa.Column("session_id", sa.String(length=24), nullable=False),
        sa.Column("prolific_study_id", sa.String(length=24), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_prolific_sessions_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prolific_sessions")),
        sa.UniqueConstraint("session_id", name=op.f("uq_prolific_sessions_session_id")),
        sa.UniqueConstraint(
            "study_id", "participant_id", name=op.f("uq_prolific_sessions_study_id_participant_id")
        ),
    )
    op.create_index(
        op.f("ix_prolific_sessions_study_id"), "prolific_sessions", ["study_id"], unique=False
    )
    op.create_table(
        "prolific_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prolific_study_id", sa.String(length=24), nullable=False),
        sa.Column("submission_id", sa.String(length=24), nullable=False),
        sa.Column("participant_id", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("study_code", sa.String(length=64), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prolific_study_id"],
            ["prolific_studies.prolific_study_id"],
            name=op.f("fk_prolific_submissions_prolific_study_id_prolific_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prolific_submissions")),
        sa.UniqueConstraint("submission_id", name=op.f("uq_prolific_submissions_submission_id")),
    )
    op.create_index(
        op.f("ix_prolific_submissions_prolific_study_id"),
        "prolific_submissions",
        ["prolific_study_id"],
        unique=False,
    )
    op.create_table(
        "prolific_bonuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("bulk_id", sa.String(length=64), nullable=False),
        sa.Column("bonuses", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("fees_minor", sa.Integer(), nullable=False),
        sa.Column("vat_minor", sa.Integer(), nullable=False),
        sa.Column("total_minor", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_prolific_bonuses_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prolific_bonuses")),
        sa.UniqueConstraint("bulk_id", name=op.f("uq_prolific_bonuses_bulk_id")),
    )
    op.create_index(
        op.f("ix_prolific_bonuses_study_id"), "prolific_bonuses", ["study_id"], unique=False
    )


def downgrade() -> None:
    participants = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM workers WHERE source = 'prolific'")
    )
    if participants:
        raise RuntimeError(
            f"{participants} Prolific participant(s) have work in this database; the schema "
            "before 0003 cannot hold them. Export the studies (`study-server export`) and "
            "remove them before downgrading."
        )
    op.drop_index(op.f("ix_prolific_bonuses_study_id"), table_name="prolific_bonuses")
    op.drop_table("prolific_bonuses")
    op.drop_index(
        op.f("ix_prolific_submissions_prolific_study_id"), table_name="prolific_submissions"
    )
    op.drop_table("prolific_submissions")
    op.drop_index(op.f("ix_prolific_sessions_study_id"), table_name="prolific_sessions")
    op.drop_table("prolific_sessions")
    op.drop_table("prolific_studies")
    _set_worker_sources("mturk", "local")
