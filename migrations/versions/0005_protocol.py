"""The human-subjects protocol: consent and debrief texts, attention policies, experiments.

- `experiments`, and `studies.experiment_id`: studies of several defenses that share one pool
  of people (a person takes part in one of them);
- `protocol_texts`: the versions of each study's consent and debrief texts (source, the
  sanitized HTML people see, its SHA-256, placeholders left);
- `attention_policies`: the versions of each study's attention policy;
- `allocations`: the consent version agreed to (id, SHA-256, time), the debrief given, and the
  attention outcome with its numbers and policy version;
- `lab_invitations.experiment_id`: codes good for any one study of an experiment.

Every study already in the database gets the built-in default texts (with their `[EDIT: ...]`
placeholders) and the default policy as version 1, so its pages keep working; submissions
stored before this revision have no attention outcome until `study-server protocol attention`
judges them.

The downgrade refuses, with the reason, while the database holds what 0004 cannot: grouped
studies, consent or attention records on allocations, texts or policies other than those
defaults. Export first (the consent records are part of the study's ethics record).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from study_server.attention import PolicySpec
from study_server.db.models import TextKind
from study_server.protocol_texts import default_text

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTED = "status = 'submitted' AND verification IN ('confirmed', 'invited', 'not_applicable')"
_ATTENTION = ("passed", "failed_attention", "not_applicable")
_ALLOCATION_FKS = (
    ("consent_text_id", "protocol_texts"),
    ("debrief_text_id", "protocol_texts"),
    ("attention_policy_id", "attention_policies"),
)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _study_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["study_id"], ["studies.id"], name=op.f(f"fk_{table}_study_id_studies"), ondelete="CASCADE"
    )


def _counted_index(create: bool) -> None:
    """SQLite's batch copy of `allocations` would lose the partial index's WHERE: it is taken
    down around the copy and made again (as 0002 does)."""
    if create:
        op.create_index(
            "uq_allocations_counted_assignment",
            "allocations",
            ["assignment_id"],
            unique=True,
            sqlite_where=sa.text(_COUNTED),
            postgresql_where=sa.text(_COUNTED),
        )
    else:
        op.drop_index(
            "uq_allocations_counted_assignment",
            table_name="allocations",
            sqlite_where=sa.text(_COUNTED),
            postgresql_where=sa.text(_COUNTED),
        )


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("slug", name=op.f("uq_experiments_slug")),
        sa.UniqueConstraint("key", name=op.f("uq_experiments_key")),
    )
    op.create_table(
        "protocol_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("textkind", "consent", "debrief"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source_format", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_name", sa.String(length=300), nullable=True),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("placeholders", sa.Integer(), nullable=False),
        _created_at(),
        _study_fk("protocol_texts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protocol_texts")),
        sa.UniqueConstraint(
            "study_id", "kind", "version", name=op.f("uq_protocol_texts_study_id_kind_version")
        ),
    )
    op.create_index(op.f("ix_protocol_texts_study_id"), "protocol_texts", ["study_id"])
    op.create_table(
        "attention_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("min_catch_accuracy", sa.Float(), nullable=True),
        sa.Column("min_median_response_ms", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _created_at(),
        _study_fk("attention_policies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attention_policies")),
        sa.UniqueConstraint(
            "study_id", "version", name=op.f("uq_attention_policies_study_id_version")
        ),
    )
    op.create_index(op.f("ix_attention_policies_study_id"), "attention_policies", ["study_id"])

    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("experiment_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_studies_experiment_id_experiments"), "experiments", ["experiment_id"], ["id"]
        )
        batch.create_index(op.f("ix_studies_experiment_id"), ["experiment_id"])
    with op.batch_alter_table("lab_invitations") as batch:
        batch.add_column(sa.Column("experiment_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_lab_invitations_experiment_id_experiments"),
            "experiments",
            ["experiment_id"],
            ["id"],
        )
    _counted_index(create=False)
    with op.batch_alter_table("allocations") as batch:
        for column, _ in _ALLOCATION_FKS:
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
        batch.add_column(sa.Column("consent_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("debriefed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("attention", _enum("attentionoutcome", *_ATTENTION), nullable=True)
        )
        batch.add_column(sa.Column("attention_detail", sa.JSON(), nullable=True))
        for column, table in _ALLOCATION_FKS:
            batch.create_foreign_key(
                op.f(f"fk_allocations_{column}_{table}"), table, [column], ["id"]
            )
    _counted_index(create=True)
    _defaults_for_existing_studies()


def _defaults_for_existing_studies() -> None:
    studies = op.get_bind().execute(sa.text("SELECT id FROM studies ORDER BY id")).scalars().all()
    if not studies:
        return
    texts = sa.table(
        "protocol_texts",
        *(
            sa.column(name)
            for name in (
                "study_id", "kind", "version", "source_format", "source", "source_name",
                "html", "sha256", "placeholders",
            )
        ),
    )  # fmt: skip
    rendered = {kind: default_text(kind) for kind in TextKind}
    op.bulk_insert(
        texts,
        [
            {
                "study_id": study_id,
                "kind": kind.value,
                "version": 1,
                "source_format": text.source_format,
                "source": text.source,
                "source_name": None,
                "html": text.html,
                "sha256": text.sha256,
                "placeholders": text.placeholders,
            }
            for study_id in studies
            for kind, text in rendered.items()
        ],
    )
    policies = sa.table(
        "attention_policies",
        *(
            sa.column(name)
            for name in ("study_id", "version", "min_catch_accuracy", "min_median_response_ms")
        ),
        sa.column("origin"),
    )
    spec = PolicySpec()
    op.bulk_insert(
        policies,
        [
            {
                "study_id": study_id,
                "version": 1,
                "min_catch_accuracy": spec.min_catch_accuracy,
                "min_median_response_ms": spec.min_median_response_ms,
                "origin": "default",
            }
            for study_id in studies
        ],
    )


def _refuse_if(sql: str, why: str) -> None:
    found = op.get_bind().execute(sa.text(sql)).scalar()
    if found:
        raise RuntimeError(
            f"cannot downgrade below 0005: {found} {why}; export the study (labels and "
            "`study-server protocol show`) and keep it before going back"
        )


def downgrade() -> None:
    # What 0004 cannot hold is refused, never dropped in silence.
    _refuse_if(
        "SELECT count(*) FROM experiments",
        "experiment(s) group studies (0004 cannot keep their exclusion across studies)",
    )
    _refuse_if(
        "SELECT count(*) FROM allocations WHERE consent_sha256 IS NOT NULL "
        "OR attention IS NOT NULL OR debrief_text_id IS NOT NULL",
        "allocation(s) record the consent agreed to, the debrief given or an attention outcome",
    )
    _refuse_if(
        "SELECT count(*) FROM protocol_texts WHERE source_name IS NOT NULL OR version > 1",
        "consent or debrief text(s) other than the built-in defaults",
    )
    _refuse_if(
        "SELECT count(*) FROM attention_policies WHERE origin != 'default' OR version > 1",
        "attention polic(ies) other than the default",
    )
    _counted_index(create=False)
    with op.batch_alter_table("allocations") as batch:
        for column, table in _ALLOCATION_FKS:
            batch.drop_constraint(op.f(f"fk_allocations_{column}_{table}"), type_="foreignkey")
        batch.drop_constraint(op.f("ck_allocations_attentionoutcome"), type_="check")
        for column in (
            "attention_detail",
            "attention",
            "debriefed_at",
            "consented_at",
            "consent_sha256",
            *(column for column, _ in _ALLOCATION_FKS),
        ):
            batch.drop_column(column)  # fmt: skip
    _counted_index(create=True)
    with op.batch_alter_table("lab_invitations") as batch:
        batch.drop_constraint(
            op.f("fk_lab_invitations_experiment_id_experiments"), type_="foreignkey"
        )
        batch.drop_column("experiment_id")
    with op.batch_alter_table("studies") as batch:
        batch.drop_index(op.f("ix_studies_experiment_id"))
        batch.drop_constraint(op.f("fk_studies_experiment_id_experiments"), type_="foreignkey")
        batch.drop_column("experiment_id")
    op.drop_index(op.f("ix_attention_policies_study_id"), table_name="attention_policies")
    op.drop_table("attention_policies")
    op.drop_index(op.f("ix_protocol_texts_study_id"), table_name="protocol_texts")
    op.drop_table("protocol_texts")
    op.drop_table("experiments")
