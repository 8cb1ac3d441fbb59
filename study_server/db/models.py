"""The study's tables (SQLAlchemy 2). The schema is created only by Alembic (migrations/).

The integrity rules of the human study are constraints here, not conventions in code,
so they hold under concurrency on both SQLite and PostgreSQL:

- a stimulus belongs to exactly one assignment of each replica (`assignment_items` unique on
  stimulus+replica): a study asking for k labels per image holds k replicas of its layout;
- a worker holds at most one allocation per study (`allocations` unique on study+worker),
  so nobody annotates two assignments of one study;
- an assignment has at most one *counted* submission: confirmed by MTurk, or made with a lab
  invitation (partial unique index). Several claims may work on one assignment's images
  (two claims of the same HIT, see study_server/allocation.py), and a flagged submission
  keeps its labels while the images go back to the pool, so the rule is on what counts;
- a label is stored once per item of an allocation (`labels` unique on allocation+stimulus);
- a lab invitation code is stored only as its SHA-256 (`lab_invitations.code_sha256`);
- a study's consent and debrief texts and its attention policy are versioned, never edited in
  place (`protocol_texts`, `attention_policies` unique on study+kind+version): an allocation
  points at the consent version its person agreed to (with its SHA-256 and the time), the
  debrief it was given, and the policy its attention outcome was judged by.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
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
    Numeric,
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
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
    """Whether a submission the server recorded counts (see `mturk sync`, `study-server invite`).

    Market work (MTurk, Prolific) is `unverified` until `mturk sync` / `prolific sync` makes
    it `confirmed` or `flagged`. Lab work
    made with an invitation code is `invited`; `not_applicable` is lab work from before
    invitations (any code a visitor typed), which the analysis no longer counts.
    """

    unverified = "unverified"
    confirmed = "confirmed"
    flagged = "flagged"
    not_applicable = "not_applicable"  # lab mode before invitations (schema 0001)
    invited = "invited"  # lab mode, with a code from `study-server invite`


# Submissions that count for the analysis; at most one per assignment (index below).
COUNTED_VERIFICATIONS = (Verification.confirmed, Verification.invited, Verification.not_applicable)
_COUNTED_SQL = "status = 'submitted' AND verification IN ('confirmed', 'invited', 'not_applicable')"


class Experiment(Base):
    """Studies of several defenses (and networks) that share one pool of people: whoever
    takes part in one of them takes part in none of the others (`store.sibling_study_ids`)."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    # Random, fixed at creation: names the experiment on the markets (MTurk's exclusion
    # qualification, Prolific's participant group), where two databases may reuse a slug.
    key: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


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
    # k: each image is in one assignment of each of k replicas, so k different people label
    # it (one allocation per person and study). 1 in the paper.
    labels_per_image: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id"), nullable=True, index=True
    )

    experiment: Mapped[Experiment | None] = relationship()
    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="study")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="study", order_by="Assignment.ordinal"
    )


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
    # The defense whose bundle the stimulus came from, in an interleaved study (stimuli of
    # several defenses); None: the study's defense (a study of one bundle).
    defense: Mapped[str | None] = mapped_column(String(32), nullable=True)

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
    status: Mapped[AssignmentStatus] = mapped_column(
        _enum(AssignmentStatus), default=AssignmentStatus.available
    )
    # Which of the study's `labels_per_image` replicas of its layout (0 .. k-1).
    replica: Mapped[int] = mapped_column(Integer, server_default="0", default=0)

    study: Mapped[Study] = relationship(back_populates="assignments")
    items: Mapped[list[AssignmentItem]] = relationship(order_by="AssignmentItem.position")


class AssignmentItem(Base):
    __tablename__ = "assignment_items"
    __table_args__ = (UniqueConstraint("stimulus_id", "replica"),)

    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"))
    # The assignment's replica, kept here so the schema can hold the rule above.
    replica: Mapped[int] = mapped_column(Integer, server_default="0", default=0)

    stimulus: Mapped[Stimulus] = relationship()


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[WorkerSource] = mapped_column(_enum(WorkerSource))
    # MTurk's workerId, or the lab participant's code in local mode.
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class AttentionOutcome(str, enum.Enum):
    """How a submission measured against the study's attention policy (study_server/attention.py)."""

    passed = "passed"
    failed_attention = "failed_attention"
    not_applicable = "not_applicable"  # nothing to judge: no catch trials, no time minimum


class TextKind(str, enum.Enum):
    consent = "consent"
    debrief = "debrief"


class ProtocolText(Base):
    """One version of a study's consent or debrief text (study_server/protocol_texts.py).

    `html` is what people are shown (rendered from `source` and sanitized once, when the
    version is made) and `sha256` is its digest: the allocation of a person who agreed keeps
    it. A new text is a new version; versions are never changed.
    """

    __tablename__ = "protocol_texts"
    __table_args__ = (UniqueConstraint("study_id", "kind", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TextKind] = mapped_column(_enum(TextKind))
    version: Mapped[int] = mapped_column(Integer)
    # "markdown" or "html": how `source` was read.
    source_format: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    # The file it came from; None for the built-in default (a template with placeholders).
    source_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    html: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # "[EDIT: ...]" placeholders left in the text: a live study refuses to start with any.
    placeholders: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class AttentionPolicy(Base):
    """One version of a study's attention policy: what a submission must reach to pass."""

    __tablename__ = "attention_policies"
    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # Share of the assignment's catch trials labeled with their true class (None: no minimum).
    min_catch_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Median time per image, over the submission's labels (None: no minimum).
    min_median_response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "default" (settings, at import), "import" (given to `study-server import`), "command".
    origin: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class Allocation(Base):
    """A worker's hold on an assignment, from accept to submit or timeout."""

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("study_id", "worker_id"),
        Index(
            "uq_allocations_counted_assignment",
            "assignment_id",
            unique=True,
            sqlite_where=text(_COUNTED_SQL),
            postgresql_where=text(_COUNTED_SQL),
        ),
        Index("ix_allocations_study_id_source_address", "study_id", "source_address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    status: Mapped[AllocationStatus] = mapped_column(
        _enum(AllocationStatus), default=AllocationStatus.active
    )
    # MTurk's identifiers for this piece of work (None in local mode).
    mturk_assignment_id: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    hit_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    turk_submit_to: Mapped[str | None] = mapped_column(String(256), nullable=True)
    allocated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    verification: Mapped[Verification] = mapped_column(
        _enum(Verification), default=Verification.unverified
    )
    verification_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The client's address (IPv4, or an IPv6 /64) while the allocation is active, for the
    # per-address limit; erased when it is submitted or expires (never kept for the study).
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the person agreed to before anything was allocated: the consent version, the
    # SHA-256 of the text they were shown, and when (study_server/protocol_texts.py).
    consent_text_id: Mapped[int | None] = mapped_column(
        ForeignKey("protocol_texts.id"), nullable=True
    )
    consent_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The debrief given with the stored labels (the page shows it before the hand-off).
    debrief_text_id: Mapped[int | None] = mapped_column(
        ForeignKey("protocol_texts.id"), nullable=True
    )
    debriefed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The attention policy's verdict on the submission (None until submitted), its numbers,
    # and the policy version it was judged by (study_server/attention.py).
    attention: Mapped[AttentionOutcome | None] = mapped_column(
        _enum(AttentionOutcome), nullable=True
    )
    attention_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attention_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("attention_policies.id"), nullable=True
    )

    assignment: Mapped[Assignment] = relationship()
    worker: Mapped[Worker] = relationship()


class Label(Base):
    """A submitted label: written only by the submission, all of an allocation's at once."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("allocation_id", "stimulus_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[int] = mapped_column(
        ForeignKey("allocations.id", ondelete="CASCADE"), index=True
    )
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    stimulus_id: Mapped[int] = mapped_column(
        ForeignKey("stimuli.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[int] = mapped_column(Integer)
    # Time the item was on screen before the answer, as the browser measured it.
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    stimulus: Mapped[Stimulus] = relationship()


class LabelDraft(Base):
    """A label saved as the person goes, before the submission (a reload resumes from these).

    The submission copies the labels into `labels` in one transaction and removes these.
    """

    __tablename__ = "label_drafts"
    __table_args__ = (UniqueConstraint("allocation_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[int] = mapped_column(Integer)
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LabInvitation(Base):
    """A participant code for the lab mode, minted by `study-server invite` (single use)."""

    __tablename__ = "lab_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the normalised code: the code itself is shown once, when minted.
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Set when the study was in an experiment at minting: the code is then good for any one
    # study of the experiment (the link opens `study_id`'s), so the same person is known
    # across them and refused a second study (study_server/invitations.py).
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id"), nullable=True)
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class Event(Base):
    """Append-only audit of what happened (imports, accepts, submits, refusals, MTurk actions)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), nullable=True, index=True
    )
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
    # The HIT type's AssignmentDurationInSeconds: no hold on the server outlasts it.
    assignment_duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)


class MTurkAssignment(Base):
    """What MTurk reports about a worker's assignment of a HIT (filled by `mturk sync`)."""

    __tablename__ = "mturk_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    hit_id: Mapped[str] = mapped_column(
        ForeignKey("mturk_hits.hit_id", ondelete="CASCADE"), index=True
    )
    mturk_assignment_id: Mapped[str] = mapped_column(String(128), unique=True)
    worker_external_id: Mapped[str] = mapped_column(String(128))
    # Submitted | Approved | Rejected, as MTurk says.
    status: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BonusStatus(str, enum.Enum):
    pending = "pending"  # recorded, the market call not yet known to have succeeded
    paid = "paid"


class MTurkBonus(Base):
    """One bonus for one assignment and one purpose. Written before the SendBonus call
    (pending) and after it (paid), with a UniqueRequestToken derived from the study, the
    assignment and the purpose, so a run interrupted anywhere is finished by the next one
    without paying anyone twice."""

    __tablename__ = "mturk_bonuses"
    __table_args__ = (UniqueConstraint("mturk_assignment_id", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    sandbox: Mapped[bool] = mapped_column(Boolean)
    mturk_assignment_id: Mapped[str] = mapped_column(String(128))
    worker_external_id: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    reason: Mapped[str] = mapped_column(Text)
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[BonusStatus] = mapped_column(_enum(BonusStatus), default=BonusStatus.pending)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


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
