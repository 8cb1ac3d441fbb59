"""Several labels per image, and studies that mix the stimuli of several defenses.

- `studies.labels_per_image` (k, 1 by default as in the paper): the study holds k replicas of
  its layout, each image in one assignment of every replica; with one allocation per person
  and study, its k labels come from k different people;
- `assignments.replica` (0..k-1) and `assignment_items.replica`: the rule "a stimulus belongs
  to one assignment" becomes "to one assignment per replica" (unique stimulus + replica);
- `stimuli.defense`: set on the stimuli of an interleaved study (`study-server experiment
  layout --interleaved`), whose assignments mix the defenses of an experiment; None for a
  study of one bundle, whose defense is the study's.

Every existing study is k = 1, every assignment and item replica 0, every stimulus without
a defense of its own: nothing changes for them. The downgrade refuses, with the count, while
a study has k > 1 or a stimulus has its own defense (0005 cannot hold them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(
            sa.Column("labels_per_image", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("replica", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("assignment_items") as batch:
        batch.add_column(sa.Column("replica", sa.Integer(), server_default="0", nullable=False))
        batch.drop_constraint(op.f("uq_assignment_items_stimulus_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_assignment_items_stimulus_id_replica"), ["stimulus_id", "replica"]
        )
    with op.batch_alter_table("stimuli") as batch:
        batch.add_column(sa.Column("defense", sa.String(length=32), nullable=True))


def _refuse_if(sql: str, why: str) -> None:
    found = op.get_bind().execute(sa.text(sql)).scalar()
    if found:
        raise RuntimeError(
            f"cannot downgrade below 0006: {found} {why}; export the study's labels and keep "
            "them before going back"
        )


def downgrade() -> None:
    _refuse_if(
        "SELECT count(*) FROM studies WHERE labels_per_image != 1",
        "study(ies) ask for several labels per image (0005 holds one assignment per image)",
    )
    _refuse_if(
        "SELECT count(*) FROM stimuli WHERE defense IS NOT NULL",
        "stimul(i) of interleaved studies carry their own defense",
    )
    with op.batch_alter_table("stimuli") as batch:
        batch.drop_column("defense")
    with op.batch_alter_table("assignment_items") as batch:
        batch.drop_constraint(op.f("uq_assignment_items_stimulus_id_replica"), type_="unique")
        batch.create_unique_constraint(op.f("uq_assignment_items_stimulus_id"), ["stimulus_id"])
        batch.drop_column("replica")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("replica")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("labels_per_image")
