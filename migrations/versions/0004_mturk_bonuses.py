"""MTurk bonuses: one row per (assignment, purpose), written before and after the payment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mturk_bonuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("mturk_assignment_id", sa.String(length=128), nullable=False),
        sa.Column("worker_external_id", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("unique_request_token", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "paid",
                name="bonusstatus",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_mturk_bonuses_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mturk_bonuses")),
        sa.UniqueConstraint(
            "mturk_assignment_id",
            "purpose",
            name=op.f("uq_mturk_bonuses_mturk_assignment_id_purpose"),
        ),
        sa.UniqueConstraint(
            "unique_request_token", name=op.f("uq_mturk_bonuses_unique_request_token")
        ),
    )
    op.create_index(op.f("ix_mturk_bonuses_study_id"), "mturk_bonuses", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mturk_bonuses_study_id"), table_name="mturk_bonuses")
    op.drop_table("mturk_bonuses")
