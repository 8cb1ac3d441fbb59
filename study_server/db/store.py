"""The study-database operations every side shares: the server's routes, the market commands
(`mturk`, `prolific`), the analysis and the pipeline look studies up and write the audit of
events through these, so a rule (what a missing study says, what an event records) lives once.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy.orm import Session

from study_server.db.models import Assignment, Event, Study
from study_server.db.rendered import Database, defer
from study_server.errors import NotFoundError

T = TypeVar("T")
# What a missing row is called in messages, by table.
NOUNS = {"studies": "study", "experiments": "experiment"}


class StudyNotFound(NotFoundError, LookupError):
    """No study with that slug (HTTP 404 on the server, exit status 2 from a command)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def find_study(session: Session, slug: str, *, list_known: bool = False) -> Study:
    """The study named `slug`. `list_known` names the studies that do exist in the error: a
    help at the command line, never sent to the public web (it would list every study)."""
    return find_named(
        session,
        Study,
        slug,
        list_known=list_known,
        error=StudyNotFound,
        none_yet="import one with `study-server import BUNDLE`",
    )


def find_named(
    session: Session,
    model: type[T],
    slug: str,
    *,
    list_known: bool,
    error: type[NotFoundError],
    none_yet: str,
) -> T:
    """The row of `model` (a table with a `slug`) named `slug`, or `error`: "no study named
    'x'", or with `list_known` the names that exist ("no study 'x' in the database (studies:
    a, b)")."""
    noun = NOUNS[model.__tablename__]
    found = session.scalar(_by_slug(model), {"slug": slug})
    if found is not None:
        return found
    if not list_known:
        raise error(_no_such(noun, slug))
    known = session.scalars(select(model.slug).order_by(model.slug)).all()  # type: ignore[attr-defined]
    listing = ", ".join(known) if known else f"none; {none_yet}"
    raise error(f"no {noun} {slug!r} in the database ({model.__tablename__}: {listing})")


def _no_such(noun: str, slug: str) -> str:
    return f"no {noun} named {slug!r}"


def study_columns(db: Database, slug: str) -> Any:
    """The study named `slug` as a row of `STUDY_COLUMNS` (what a claim needs of it), or
    `StudyNotFound`: for the operations written for a Session and a driver connection alike."""
    found = db.execute(_STUDY_COLUMNS_BY_SLUG, {"slug": slug}).first()
    if found is None:
        raise StudyNotFound(_no_such("study", slug))
    return found


STUDY_COLUMNS = (Study.id, Study.slug, Study.experiment_id, Study.class_names)
_STUDY_COLUMNS_BY_SLUG = select(*STUDY_COLUMNS).where(Study.slug == bindparam("slug"))


@functools.cache
def _by_slug(model: type[T]) -> Select[tuple[T]]:
    """Built once per model (every accept finds its study): building a statement cost more
    than running it."""
    return select(model).where(model.slug == bindparam("slug"))  # type: ignore[attr-defined]


def sibling_study_ids(session: Session, *, study_id: int) -> list[int]:
    """The studies whose participants may not take part in this one, itself included: every
    study of its experiment (`study-server experiment`), or the study alone.

    The one hook for exclusion across studies: the server's accept refuses a person who holds
    an allocation in another of them (`allocation.refuse_sibling_participant`), `mturk
    publish` grants the experiment's qualification to their workers, and `prolific publish`
    blocklists their Prolific studies.
    """
    experiment_id = session.scalar(select(Study.experiment_id).where(Study.id == study_id))
    if experiment_id is None:
        return [study_id]
    return experiment_study_ids(session, experiment_id=experiment_id)


def experiment_study_ids(session: Database, *, experiment_id: int) -> list[int]:
    """The studies of an experiment, in the order they were made."""
    return list(session.scalars(_EXPERIMENT_STUDY_IDS, {"experiment_id": experiment_id}))


_EXPERIMENT_STUDY_IDS = (
    select(Study.id).where(Study.experiment_id == bindparam("experiment_id")).order_by(Study.id)
)


def assignment_count(session: Session, *, study_id: int) -> int:
    query = select(func.count()).select_from(Assignment).where(Assignment.study_id == study_id)
    return session.scalar(query) or 0


def record_event(
    session: Database,
    *,
    kind: str,
    study_id: int | None = None,
    worker: str | None = None,
    assignment_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Adds one row to the audit of events (in the caller's transaction). `worker` is the
    person's external id (MTurk worker id, lab code hash, Prolific id) where one is known.

    Written at once on the table, not added to the session: nobody reads an event back as an
    object, and the ORM's insert at the flush cost more CPU than the statement (every accept
    and submission records one). On a driver connection it goes with the next round trip
    (`rendered.defer`)."""
    defer(
        session,
        _INSERT_EVENT,
        {
            "study_id": study_id,
            "kind": kind,
            "worker_external_id": worker,
            "assignment_id": assignment_id,
            "detail": detail or {},
        },
    )


_events = Event.__table__
# Every column named (a driver connection fills in no Python-side default, such as `detail`'s);
# `inline()`: no RETURNING of the key, which nobody reads.
_INSERT_EVENT = (
    insert(_events)
    .inline()
    .values(
        {
            name: bindparam(name, type_=_events.c[name].type)
            for name in ("study_id", "kind", "worker_external_id", "assignment_id", "detail")
        }
    )
)
