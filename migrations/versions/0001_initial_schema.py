"""The initial study schema: studies, stimuli, assignments, workers, allocations, labels,
the audit of events and the MTurk bookkeeping (see study_server/db/models.py).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 07:34:55.427922
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("defense", sa.String(length=32), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("bundle_version", sa.Integer(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("attack", sa.JSON(), nullable=False),
        sa.Column("items_per_assignment", sa.Integer(), nullable=False),
        sa.Column("split_seed", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("manifest_sha256", name=op.f("uq_studies_manifest_sha256")),
        sa.UniqueConstraint("slug", name=op.f("uq_studies_slug")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "mturk",
                "local",
                name="workersource",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_workers_source_external_id")),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "available",
                "allocated",
                "submitted",
                name="assignmentstatus",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_assignments_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("public_id", name=op.f("uq_assignments_public_id")),
        sa.UniqueConstraint("study_id", "ordinal", name=op.f("uq_assignments_study_id_ordinal")),
    )
    op.create_index(op.f("ix_assignments_study_id"), "assignments", ["study_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("worker_external_id", sa.String(length=128), nullable=True),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_events_study_id_studies"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_kind"), "events", ["kind"], unique=False)
    op.create_index(op.f("ix_events_study_id"), "events", ["study_id"], unique=False)

    op.create_table(
        "mturk_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("hit_id", sa.String(length=128), nullable=False),
        sa.Column("hit_type_id", sa.String(length=128), nullable=False),
        sa.Column("unique_request_token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_mturk_hits_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mturk_hits")),
        sa.UniqueConstraint("hit_id", name=op.f("uq_mturk_hits_hit_id")),
        sa.UniqueConstraint(
            "study_id", "slot", "sandbox", name=op.f("uq_mturk_hits_study_id_slot_sandbox")
        ),
        sa.UniqueConstraint(
            "unique_request_token", name=op.f("uq_mturk_hits_unique_request_token")
        ),
    )
    op.create_index(op.f("ix_mturk_hits_study_id"), "mturk_hits", ["study_id"], unique=False)

    op.create_table(
        "stimuli",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("stimulus_key", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "adversarial",
                "catch",
                name="stimuluskind",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("source_index", sa.Integer(), nullable=False),
        sa.Column("original_label", sa.Integer(), nullable=False),
        sa.Column("prediction_original", sa.Integer(), nullable=False),
        sa.Column("confidence_original", sa.Float(), nullable=False),
        sa.Column("target", sa.Integer(), nullable=True),
        sa.Column("prediction_adversarial", sa.Integer(), nullable=False),
        sa.Column("confidence_adversarial", sa.Float(), nullable=False),
        sa.Column("perturbation_l2", sa.Float(), nullable=False),
        sa.Column("rho", sa.Float(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reached_confidence", sa.Boolean(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("image_png", sa.LargeBinary(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_stimuli_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stimuli")),
        sa.UniqueConstraint(
            "study_id", "stimulus_key", name=op.f("uq_stimuli_study_id_stimulus_key")
        ),
    )
    op.create_index(op.f("ix_stimuli_study_id"), "stimuli", ["study_id"], unique=False)

    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "submitted",
                "expired",
                name="allocationstatus",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("mturk_assignment_id", sa.String(length=128), nullable=True),
        sa.Column("hit_id", sa.String(length=128), nullable=True),
        sa.Column("turk_submit_to", sa.String(length=256), nullable=True),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "verification",
            sa.Enum(
                "unverified",
                "confirmed",
                "flagged",
                "not_applicable",
                name="verification",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("verification_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_allocations_assignment_id_assignments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_allocations_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_allocations_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("mturk_assignment_id", name=op.f("uq_allocations_mturk_assignment_id")),
        sa.UniqueConstraint(
            "study_id", "worker_id", name=op.f("uq_allocations_study_id_worker_id")
        ),
    )
    op.create_index(
        op.f("ix_allocations_assignment_id"), "allocations", ["assignment_id"], unique=False
    )
    op.create_index(op.f("ix_allocations_hit_id"), "allocations", ["hit_id"], unique=False)
    op.create_index(op.f("ix_allocations_study_id"), "allocations", ["study_id"], unique=False)
    op.create_index(op.f("ix_allocations_worker_id"), "allocations", ["worker_id"], unique=False)
    op.create_index(
        "uq_allocations_live_assignment",
        "allocations",
        ["assignment_id"],
        unique=True,
        sqlite_where=sa.text("status != 'expired'"),
        postgresql_where=sa.text("status != 'expired'"),
    )

    op.create_table(
        "assignment_items",
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("stimulus_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_assignment_items_assignment_id_assignments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stimulus_id"],
            ["stimuli.id"],
            name=op.f("fk_assignment_items_stimulus_id_stimuli"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("assignment_id", "position", name=op.f("pk_assignment_items")),
        sa.UniqueConstraint("stimulus_id", name=op.f("uq_assignment_items_stimulus_id")),
    )
    op.create_table(
        "mturk_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hit_id", sa.String(length=128), nullable=False),
        sa.Column("mturk_assignment_id", sa.String(length=128), nullable=False),
        sa.Column("worker_external_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hit_id"],
            ["mturk_hits.hit_id"],
            name=op.f("fk_mturk_assignments_hit_id_mturk_hits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mturk_assignments")),
        sa.UniqueConstraint(
            "mturk_assignment_id", name=op.f("uq_mturk_assignments_mturk_assignment_id")
        ),
    )
    op.create_index(
        op.f("ix_mturk_assignments_hit_id"), "mturk_assignments", ["hit_id"], unique=False
    )

    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("stimulus_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("response_ms", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["allocations.id"],
            name=op.f("fk_labels_allocation_id_allocations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_labels_assignment_id_assignments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stimulus_id"],
            ["stimuli.id"],
            name=op.f("fk_labels_stimulus_id_stimuli"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_labels_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint(
            "assignment_id", "stimulus_id", name=op.f("uq_labels_assignment_id_stimulus_id")
        ),
    )
    op.create_index(op.f("ix_labels_allocation_id"), "labels", ["allocation_id"], unique=False)
    op.create_index(op.f("ix_labels_stimulus_id"), "labels", ["stimulus_id"], unique=False)
    op.create_index(op.f("ix_labels_worker_id"), "labels", ["worker_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_labels_worker_id"), table_name="labels")
    op.drop_index(op.f("ix_labels_stimulus_id"), table_name="labels")
    op.drop_index(op.f("ix_labels_allocation_id"), table_name="labels")

    op.drop_table("labels")
    op.drop_index(op.f("ix_mturk_assignments_hit_id"), table_name="mturk_assignments")

    op.drop_table("mturk_assignments")
    op.drop_table("assignment_items")
    op.drop_index(
        "uq_allocations_live_assignment",
        table_name="allocations",
        sqlite_where=sa.text("status != 'expired'"),
        postgresql_where=sa.text("status != 'expired'"),
    )
    op.drop_index(op.f("ix_allocations_worker_id"), table_name="allocations")
    op.drop_index(op.f("ix_allocations_study_id"), table_name="allocations")
    op.drop_index(op.f("ix_allocations_hit_id"), table_name="allocations")
    op.drop_index(op.f("ix_allocations_assignment_id"), table_name="allocations")

    op.drop_table("allocations")
    op.drop_index(op.f("ix_stimuli_study_id"), table_name="stimuli")

    op.drop_table("stimuli")
    op.drop_index(op.f("ix_mturk_hits_study_id"), table_name="mturk_hits")

    op.drop_table("mturk_hits")
    op.drop_index(op.f("ix_events_study_id"), table_name="events")
    op.drop_index(op.f("ix_events_kind"), table_name="events")

    op.drop_table("events")
    op.drop_index(op.f("ix_assignments_study_id"), table_name="assignments")

    op.drop_table("assignments")
    op.drop_table("workers")
    op.drop_table("studies")
