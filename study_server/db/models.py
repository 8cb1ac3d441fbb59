"""The study's tables (SQLAlchemy 2). The schema is created only by Alembic (migrations/).

The integrity rules of the human study are constraints here, not conventions in code,
so they hold under concurrency on both SQLite and PostgreSQL:

- a stimulus belongs to exactly one assignment (`assignment_items.stimulus_id` unique);
- a worker holds at most one allocation per study (`allocations` unique on study+worker),
  so nobody annotates two assignments of one study;
- an assignment has at most one live (active or submitted) allocation (partial unique index);
- a label is stored once per assignment item (`labels` unique on assignment+stimulus).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as strings with a CHECK constraint: portable, readable in exports.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        name=cls.__name__.lower(),
        validate_strings=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend.

    SQLite keeps no zone, so without this the same column reads back naive there and
    aware on PostgreSQL, and comparing the two raises. Naive values are refused on the
    way in rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC time")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class StimulusKind(str, enum.Enum):
    adversarial = "adversarial"
    catch = "catch"


class AssignmentStatus(str, enum.Enum):
    available = "available"
    allocated = "allocated"
    submitted = "submitted"


class AllocationStatus(str, enum.Enum):
    active = "active"
    submitted = "submitted"
    expired = "expired"


class WorkerSource(str, enum.Enum):
    mturk = "mturk"
    local = "local"
    prolific = "prolific"


class Verification(str, enum.Enum):
    """Whether the market confirmed a submission the server recorded (`mturk sync`,
    `prolific sync`)."""

    unverified = "unverified"
    confirmed = "confirmed"
    flagged = "flagged"
    not_applicable = "not_applicable"  # local (lab) mode: no market to confirm


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    defense: Mapped[str] = mapped_column(String(32))
    network: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    bundle_version: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the bundle's manifest: importing the same bundle twice is recognised by it.
    manifest_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    num_classes: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    attack: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    items_per_assignment: Mapped[int] = mapped_column(Integer)
    split_seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="study")
    assignments: Mapped[list[Assignment]] = relationship(back_populates="study", order_by="Assignment.ordinal")


class Stimulus(Base):
    __tablename__ = "stimuli"
    __table_args__ = (UniqueConstraint("study_id", "stimulus_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # The manifest's stimulus_id, e.g. "adv-00042".
    stimulus_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[StimulusKind] = mapped_column(_enum(StimulusKind))
    source_index: Mapped[int] = mapped_column(Integer)
    original_label: Mapped[int] = mapped_column(Integer)
    prediction_original: Mapped[int] = mapped_column(Integer)
    confidence_original: Mapped[float] = mapped_column(Float)
    target: Mapped[int | None] = mapped_column(Integer, nullable=True)
    prediction_adversarial: Mapped[int] = mapped_column(Integer)
    confidence_adversarial: Mapped[float] = mapped_column(Float)
    perturbation_l2: Mapped[float] = mapped_column(Float)
    rho: Mapped[float] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    reached_confidence: Mapped[bool] = mapped_column(Boolean)
    iterations: Mapped[int] = mapped_column(Integer)
    image_png: Mapped[bytes] = mapped_column(LargeBinary)
    image_sha256: Mapped[str] = mapped_column(String(64))

    study: Mapped[Study] = relationship(back_populates="stimuli")


class Assignment(Base):
    """A fixed set of items (25 by default) that one annotator labels."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("study_id", "ordinal"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    # Unguessable public handle used in URLs instead of the sequential id.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[AssignmentStatus] = mapped_column(_enum(AssignmentStatus), default=AssignmentStatus.available)

    study: Mapped[Study] = relationship(back_populates="assignments")
    items: Mapped[list[AssignmentItem]] = relationship(order_by="AssignmentItem.position")


class AssignmentItem(Base):
    __tablename__ = "assignment_items"
    __table_args__ = (UniqueConstraint("stimulus_id"),)

    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"))

    stimulus: Mapped[Stimulus] = relationship()


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[WorkerSource] = mapped_column(_enum(WorkerSource))
    # MTurk's workerId, or the lab participant's code in local mode.
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class Allocation(Base):
    """A worker's hold on an assignment, from accept to submit or timeout."""

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("study_id", "worker_id"),
        Index(
            "uq_allocations_live_assignment",
            "assignment_id",
            unique=True,
            sqlite_where=text("status != 'expired'"),
            postgresql_where=text("status != 'expired'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    status: Mapped[AllocationStatus] = mapped_column(_enum(AllocationStatus), default=AllocationStatus.active)
    # MTurk's identifiers for this piece of work (None in local mode).
    mturk_assignment_id: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    hit_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    turk_submit_to: Mapped[str | None] = mapped_column(String(256), nullable=True)
    allocated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    verification: Mapped[Verification] = mapped_column(_enum(Verification), default=Verification.unverified)
    verification_note: Mapped[str | None] = mapped_column(Text, nullable=True)

    assignment: Mapped[Assignment] = relationship()
    worker: Mapped[Worker] = relationship()


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("assignment_id", "stimulus_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[int] = mapped_column(Integer)
    # Time the item was on screen before the answer, as the browser measured it.
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    stimulus: Mapped[Stimulus] = relationship()


class Event(Base):
    """Append-only audit of what happened (imports, accepts, submits, refusals, MTurk actions)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    worker_external_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    assignment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class MTurkHit(Base):
    """A HIT published for a study: one per assignment slot, found again by its request token."""

    __tablename__ = "mturk_hits"
    __table_args__ = (UniqueConstraint("study_id", "slot", "sandbox"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # 0..n_assignments-1; the HIT for slot i is published with a token derived from (study, slot).
    slot: Mapped[int] = mapped_column(Integer)
    sandbox: Mapped[bool] = mapped_column(Boolean)
    hit_id: Mapped[str] = mapped_column(String(128), unique=True)
    hit_type_id: Mapped[str] = mapped_column(String(128))
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="Assignable")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MTurkAssignment(Base):
    """What MTurk reports about a worker's assignment of a HIT (filled by `mturk sync`)."""

    __tablename__ = "mturk_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    hit_id: Mapped[str] = mapped_column(ForeignKey("mturk_hits.hit_id", ondelete="CASCADE"), index=True)
    mturk_assignment_id: Mapped[str] = mapped_column(String(128), unique=True)
    worker_external_id: Mapped[str] = mapped_column(String(128))
    # Submitted | Approved | Rejected, as MTurk says.
    status: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProlificStudy(Base):
    """The Prolific study a study is published as (one per study), found again by its
    `internal_name` after a crash (see `prolific publish`)."""

    __tablename__ = "prolific_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), unique=True)
    prolific_study_id: Mapped[str] = mapped_column(String(24), unique=True)
    internal_name: Mapped[str] = mapped_column(String(128), unique=True)
    # Revealed to a participant only after the server stored their labels.
    completion_code: Mapped[str] = mapped_column(String(32))
    external_study_url: Mapped[str] = mapped_column(Text)
    places: Mapped[int] = mapped_column(Integer)
    # Per place, in the minor unit (pence / cents) of the workspace's currency, as Prolific has it.
    reward_minor: Mapped[int] = mapped_column(Integer)
    # UNPUBLISHED | ACTIVE | PAUSED | AWAITING REVIEW | COMPLETED, as Prolific last said.
    status: Mapped[str] = mapped_column(String(32))
    exclusion_group_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ProlificSession(Base):
    """A Prolific participant's session in a study, bound at their first visit: the page
    takes part only with this (participant, session) pair afterwards."""

    __tablename__ = "prolific_sessions"
    __table_args__ = (UniqueConstraint("study_id", "participant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[str] = mapped_column(String(24))
    # Prolific's SESSION_ID, which is the id of the participant's submission on Prolific.
    session_id: Mapped[str] = mapped_column(String(24), unique=True)
    prolific_study_id: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class ProlificSubmission(Base):
    """What Prolific lists for a study's submission (filled by `prolific sync`)."""

    __tablename__ = "prolific_submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    prolific_study_id: Mapped[str] = mapped_column(
        ForeignKey("prolific_studies.prolific_study_id", ondelete="CASCADE"), index=True
    )
    submission_id: Mapped[str] = mapped_column(String(24), unique=True)
    participant_id: Mapped[str] = mapped_column(String(24))
    # RESERVED | ACTIVE | AWAITING REVIEW | APPROVED | REJECTED | RETURNED | TIMED-OUT | ...
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    study_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProlificBonus(Base):
    """One bulk bonus payment: created on Prolific, then paid once. Prolific's pay call is not
    idempotent, so the row says `paying` before the call and `paid` after it."""

    __tablename__ = "prolific_bonuses"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    bulk_id: Mapped[str] = mapped_column(String(64), unique=True)
    # [[participant id, amount in the workspace's currency as a decimal string], ...]
    bonuses: Mapped[list[list[str]]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    # Prolific's figures for the whole payment, in the minor unit of the workspace's currency.
    amount_minor: Mapped[int] = mapped_column(Integer)
    fees_minor: Mapped[int] = mapped_column(Integer)
    vat_minor: Mapped[int] = mapped_column(Integer)
    total_minor: Mapped[int] = mapped_column(Integer)
    # created -> paying -> paid
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
