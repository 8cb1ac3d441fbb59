"""What the dashboard reads straight from the study tables on every refresh (cheap queries):
which studies a page shows, how far each got, the course of the study over time, and the
latest refusals from the audit of events.

Nothing here changes the schema or writes: the course over time is rebuilt from the
allocations' own timestamps (`allocated_at`, `submitted_at`) and their state now, and the
refusals are the `events` rows the server and the market commands already write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.db.models import (
    COUNTED_VERIFICATIONS,
    Allocation,
    AllocationStatus,
    Assignment,
    Event,
    Study,
)
from study_server.db.store import find_study
from study_server.errors import InvalidInputError
from study_server.export import study_markets
from study_server.operations import StudyProgress, study_progress
from study_server.slug import is_slug

MAX_STUDIES = 20  # studies on one page: a page of every defense x network x a few seeds
# Submissions by their state now, in the order the panels show them. States the schema gains
# later (the protocol work's `failed_attention`) are shown after these, under their own name.
VERIFICATION_ORDER = (
    "confirmed",
    "invited",
    "unverified",
    "flagged",
    "failed_attention",
    "not_applicable",
)
COUNTED = tuple(v.value for v in COUNTED_VERIFICATIONS)  # the states Table 2 counts
# Audit rows that are refusals: the server's (a 4xx it answered), the rate limit's, and the
# markets' (a submission their sync or a rejection flagged).
REFUSAL_KINDS = ("refused", "rate_limited", "submission_flagged")
REFUSALS_SHOWN = 20
_REFUSALS_SCANNED = 5000  # the newest refusal rows looked at to find this page's 20


@dataclass(frozen=True)
class Selection:
    """The studies one page shows: one study, any set chosen by slug, or (once studies are
    grouped into experiments) an experiment's. Every panel treats a selection alike."""

    title: str
    slugs: tuple[str, ...]

    @classmethod
    def of(cls, slugs: Iterable[str], title: str | None = None) -> Selection:
        """Checked slugs (422 with the reason otherwise), duplicates dropped, order kept."""
        chosen = tuple(dict.fromkeys(slugs))
        if not chosen:
            raise InvalidInputError("choose at least one study (?study=SLUG, repeatable)")
        if len(chosen) > MAX_STUDIES:
            raise InvalidInputError(f"at most {MAX_STUDIES} studies on one page, got {len(chosen)}")
        bad = [slug for slug in chosen if not is_slug(slug)]
        if bad:
            raise InvalidInputError(f"not a study slug: {bad[0][:64]!r}")
        return cls(title or ", ".join(chosen), chosen)

    @property
    def query(self) -> str:
        """The page's studies as a query string (`study=a&study=b`)."""
        return urlencode([("study", slug) for slug in self.slugs])


@dataclass(frozen=True)
class StudyRow:
    """One study's progress, as the progress panel shows it."""

    slug: str
    defense: str
    network: str
    dataset: str
    markets: tuple[str, ...]
    progress: StudyProgress

    @property
    def total(self) -> int:
        return sum(self.progress.assignments.values())

    @property
    def submissions(self) -> dict[str, int]:
        """Submitted allocations by their verification now, in VERIFICATION_ORDER."""
        found = self.progress.verification
        ordered = [name for name in VERIFICATION_ORDER if name in found]
        return {name: found[name] for name in [*ordered, *sorted(set(found) - set(ordered))]}

    @property
    def counted(self) -> int:
        return sum(n for name, n in self.progress.verification.items() if name in COUNTED)


def study_rows(session: Session, slugs: Sequence[str]) -> list[StudyRow]:
    """The progress of each study (404 naming an unknown one)."""
    rows = []
    for slug in slugs:
        study = find_study(session, slug)
        rows.append(
            StudyRow(
                study.slug,
                study.defense,
                study.network,
                study.dataset,
                tuple(study_markets(session, study)),
                study_progress(session=session, study_slug=slug),
            )
        )
    return rows


def all_slugs(session: Session) -> list[str]:
    return list(session.scalars(select(Study.slug).order_by(Study.id)))


def fingerprint(rows: Sequence[StudyRow]) -> tuple[Any, ...]:
    """Changes whenever what the analysis reads changes: labels stored, a sync's verdicts."""
    return tuple(
        (
            row.slug,
            row.progress.labels,
            tuple(sorted(row.progress.verification.items())),
            tuple(sorted(row.progress.allocations.items())),
        )
        for row in rows
    )


@dataclass(frozen=True)
class Moment:
    """One allocation's course: when it was made, when submitted, and its state now."""

    allocated_at: datetime
    submitted_at: datetime | None
    verification: str


def course(session: Session, slugs: Sequence[str]) -> list[Moment]:
    """Every allocation of the studies, oldest first (the over-time chart's data)."""
    rows = session.execute(
        select(Allocation.allocated_at, Allocation.submitted_at, Allocation.status,
               Allocation.verification)
        .join(Study, Study.id == Allocation.study_id)
        .where(Study.slug.in_(slugs))
        .order_by(Allocation.allocated_at)
    )  # fmt: skip
    return [
        Moment(
            allocated,
            submitted if status == AllocationStatus.submitted else None,
            getattr(verification, "value", verification),
        )
        for allocated, submitted, status, verification in rows
    ]


@dataclass(frozen=True)
class Refusal:
    at: datetime
    study: str
    kind: str
    action: str
    status: str
    reason: str
    worker: str


def refusals(session: Session, slugs: Sequence[str], limit: int = REFUSALS_SHOWN) -> list[Refusal]:
    """The newest refusals about these studies, newest first.

    The server writes a refused accept with the study's slug, a refused label or submission
    with the assignment's public id, a rate-limited request with its path, and a flagged
    submission with the study's id: each is traced back to its study here.
    """
    studies = dict(session.execute(select(Study.id, Study.slug).where(Study.slug.in_(slugs))).all())
    public = dict(
        session.execute(
            select(Assignment.public_id, Study.slug)
            .join(Study, Study.id == Assignment.study_id)
            .where(Study.slug.in_(slugs))
        ).all()
    )
    events = session.scalars(
        select(Event)
        .where(Event.kind.in_(REFUSAL_KINDS))
        .order_by(Event.id.desc())
        .limit(_REFUSALS_SCANNED)
    )
    found = []
    for event in events:
        study = _study_of(event, studies, set(slugs), public)
        if study is None:
            continue
        detail = event.detail or {}
        found.append(
            Refusal(
                at=event.created_at,
                study=study,
                kind=event.kind,
                action=str(detail.get("action") or detail.get("bucket") or ""),
                status=str(detail.get("status") or ("429" if event.kind == "rate_limited" else "")),
                reason=str(detail.get("reason") or detail.get("path") or ""),
                worker=event.worker_external_id or "",
            )
        )
        if len(found) == limit:
            break
    return found


def _study_of(
    event: Event, studies: dict[int, str], slugs: set[str], public: dict[str, str]
) -> str | None:
    if event.study_id is not None:
        return studies.get(event.study_id)
    detail = event.detail or {}
    if detail.get("study") in slugs:
        return str(detail["study"])
    if detail.get("assignment") in public:
        return public[detail["assignment"]]
    parts = [part for part in str(detail.get("path", "")).split("/") if part]
    for part in parts:
        if part in slugs:
            return part
        if part in public:
            return public[part]
    return None
