"""Study-ready allocation: lab invitations, labels saved as people go, claims that share a
HIT's images, flagged work back in the pool (issue 12).

- `lab_invitations`: single-use participant codes for the lab mode, stored as SHA-256;
- `label_drafts`: each label as it is given, so a reload resumes where the person was;
- `allocations.source_address`: the client's address while a hold is active (per-address
  limit), erased when it ends;
- `allocations.verification` gains `invited` (lab work made with an invitation);
- one live allocation per assignment becomes one *counted* submission per assignment, and
  labels are unique per allocation instead of per assignment: two claims of one HIT may
  label the same images, and a flagged submission keeps its labels while the images are
  labeled again;
- `mturk_hits.assignment_duration_s`: the HIT's MTurk assignment duration, the longest hold.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_VERIFICATION = ("unverified", "confirmed", "flagged", "not_applicable")
_NEW_VERIFICATION = (*_OLD_VERIFICATION, "invited")
_COUNTED = "status = 'submitted' AND verification IN ('confirmed', 'invited', 'not_applicable')"
_LIVE = "status != 'expired'"


def _verification(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="verification", native_enum=False, create_constraint=True, length=24
    )


def upgrade() -> None:
    op.create_table(
        "lab_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_lab_invitations_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_invitations")),
        sa.UniqueConstraint("code_sha256", name=op.f("uq_lab_invitations_code_sha256")),
    )
    op.create_index(
        op.f("ix_lab_invitations_study_id"), "lab_invitations", ["study_id"], unique=False
    )
    op.create_table(
        "label_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("response_ms", sa.Integer(), nullable=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["allocations.id"],
            name=op.f("fk_label_drafts_allocation_id_allocations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_drafts")),
        sa.UniqueConstraint(
            "allocation_id", "position", name=op.f("uq_label_drafts_allocation_id_position")
        ),
    )
    with op.batch_alter_table("mturk_hits") as batch:
        batch.add_column(sa.Column("assignment_duration_s", sa.Integer(), nullable=True))

    op.drop_index(
        "uq_allocations_live_assignment",
        table_name="allocations",
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    with op.batch_alter_table("allocations") as batch:
        batch.add_column(sa.Column("source_address", sa.String(length=64), nullable=True))
        batch.alter_column(
            "verification",
            existing_type=_verification(_OLD_VERIFICATION),
            type_=_verification(_NEW_VERIFICATION),
            existing_nullable=False,
        )
    op.create_index(
        "ix_allocations_study_id_source_address",
        "allocations",
        ["study_id", "source_address"],
        unique=False,
    )
    op.create_index(
        "uq_allocations_counted_assignment",
        "allocations",
        ["assignment_id"],
        unique=True,
        sqlite_where=sa.text(_COUNTED),
        postgresql_where=sa.text(_COUNTED),
    )
    with op.batch_alter_table("labels") as batch:
        batch.drop_constraint(op.f("uq_labels_assignment_id_stimulus_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_labels_allocation_id_stimulus_id"), ["allocation_id", "stimulus_id"]
        )


def _refuse_if(sql: str, why: str) -> None:
    found = op.get_bind().execute(sa.text(sql)).scalar()
    if found:
        raise RuntimeError(f"cannot downgrade below 0002: {found} {why}; export the labels first")


def downgrade() -> None:
    # What 0001 cannot hold is refused rather than silently deleted.
    _refuse_if(
        "SELECT count(*) FROM (SELECT assignment_id FROM labels GROUP BY assignment_id, "
        "stimulus_id HAVING count(*) > 1) AS twice",
        "images have labels from more than one submission (flagged work labeled again)",
    )
    _refuse_if(
        f"SELECT count(*) FROM (SELECT assignment_id FROM allocations WHERE {_LIVE} "
        "GROUP BY assignment_id HAVING count(*) > 1) AS shared",
        "assignments are held by more than one claim",
    )
    with op.batch_alter_table("labels") as batch:
        batch.drop_constraint(op.f("uq_labels_allocation_id_stimulus_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_labels_assignment_id_stimulus_id"), ["assignment_id", "stimulus_id"]
        )
    op.drop_index(
        "uq_allocations_counted_assignment",
        table_name="allocations",
        sqlite_where=sa.text(_COUNTED),
        postgresql_where=sa.text(_COUNTED),
    )
    op.drop_index("ix_allocations_study_id_source_address", table_name="allocations")
    op.execute(
        "UPDATE allocations SET verification = 'not_applicable' WHERE verification = 'invited'"
    )
    with op.batch_alter_table("allocations") as batch:
        batch.alter_column(
            "verification",
            existing_type=_verification(_NEW_VERIFICATION),
            type_=_verification(_OLD_VERIFICATION),
            existing_nullable=False,
        )
        batch.drop_column("source_address")
    op.create_index(
        "uq_allocations_live_assignment",
        "allocations",
        ["assignment_id"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    with op.batch_alter_table("mturk_hits") as batch:
        batch.drop_column("assignment_duration_s")
    op.drop_table("label_drafts")
    op.drop_index(op.f("ix_lab_invitations_study_id"), table_name="lab_invitations")
    op.drop_table("lab_invitations")
