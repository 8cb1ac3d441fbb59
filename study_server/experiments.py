"""Experiments: the studies of several defenses (and networks) that form one experiment.

A person takes part in at most one study of an experiment, so each defense is judged by
different people and nobody labels the same digit twice under two defenses. What enforces it:

- the server refuses an accept from a person who holds an allocation in another study of the
  experiment (`allocation.refuse_sibling_participant`, 409), whatever the source: an MTurk
  worker id, a Prolific id, a lab invitation code minted for the experiment;
- MTurk: the experiment has one exclusion qualification, required absent by the HITs of all
  its studies and granted to their workers (`mturk publish`, `mturk sync`);
- Prolific: one participant group per experiment, blocklisted by all its studies, and each
  study blocklists its siblings' Prolific studies (`prolific publish`, `prolific sync`).

Studies join an experiment with `study-server experiment create|add` or
`study-server import BUNDLE --experiment SLUG`; they never leave one. Joining is refused when
somebody already took part in two of the studies (the experiment's promise would be broken
from the start), or when the study is in another experiment.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    Experiment,
    LabInvitation,
    Study,
    Worker,
)
from study_server.db.store import find_named, find_study, record_event
from study_server.errors import ConflictError, NotFoundError
from study_server.slug import SLUG_RULE, is_slug


class ExperimentNotFound(NotFoundError, LookupError):
    """No experiment with that slug (exit status 2 from a command)."""


class ExperimentRefused(ConflictError):
    """A study cannot join the experiment (in another one, or people overlap)."""


@dataclass
class JoinResult:
    experiment: str
    created: bool
    joined: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    # Lab codes minted for a joining study before it joined: good for that study only.
    study_bound_codes: dict[str, int] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)  # every study of it, after the join


def find_experiment(session: Session, slug: str, *, list_known: bool = False) -> Experiment:
    return find_named(
        session,
        Experiment,
        slug,
        list_known=list_known,
        error=ExperimentNotFound,
        none_yet="make one with `study-server experiment create`",
    )


def experiment_studies(session: Session, experiment_id: int) -> list[Study]:
    return list(
        session.scalars(
            select(Study).where(Study.experiment_id == experiment_id).order_by(Study.slug)
        )
    )


def create(
    session: Session, *, slug: str, title: str | None = None, study_slugs: Sequence[str] = ()
) -> JoinResult:
    """A new experiment with these studies (in the caller's write transaction)."""
    if not is_slug(slug):
        raise ExperimentRefused(f"experiment slug {slug!r} must be {SLUG_RULE}")
    if session.scalar(select(Experiment.id).where(Experiment.slug == slug)) is not None:
        raise ExperimentRefused(
            f"experiment {slug!r} exists; add studies with `study-server experiment add {slug}`"
        )
    experiment = Experiment(slug=slug, key=secrets.token_hex(8), title=title)
    session.add(experiment)
    session.flush()
    record_event(session, kind="experiment_created", detail={"experiment": slug, "title": title})
    result = join(session, experiment, study_slugs)
    result.created = True
    return result


def join(session: Session, experiment: Experiment, study_slugs: Sequence[str]) -> JoinResult:
    """Put the studies in the experiment (in the caller's write transaction), or refuse all."""
    result = JoinResult(experiment.slug, created=False)
    studies = [find_study(session, slug, list_known=True) for slug in dict.fromkeys(study_slugs)]
    for study in studies:
        if study.experiment_id == experiment.id:
            result.already.append(study.slug)
        elif study.experiment_id is not None:
            other = session.get_one(Experiment, study.experiment_id)
            raise ExperimentRefused(
                f"study {study.slug!r} is in experiment {other.slug!r}; a study belongs to one"
            )
    joining = [s for s in studies if s.experiment_id is None]
    members = [s.id for s in experiment_studies(session, experiment.id)]
    _refuse_overlap(session, [*members, *(s.id for s in joining)])
    for study in joining:
        study.experiment_id = experiment.id
        result.joined.append(study.slug)
        codes = session.scalar(
            select(func.count())
            .select_from(LabInvitation)
            .where(LabInvitation.study_id == study.id, LabInvitation.experiment_id.is_(None))
        )
        if codes:
            result.study_bound_codes[study.slug] = int(codes)
        record_event(
            session,
            kind="study_joined_experiment",
            study_id=study.id,
            detail={"experiment": experiment.slug},
        )
    session.flush()
    result.members = [s.slug for s in experiment_studies(session, experiment.id)]
    return result


def _refuse_overlap(session: Session, study_ids: list[int]) -> None:
    """Refuse when one person already has allocations in two of these studies."""
    if len(study_ids) < 2:
        return
    twice = session.execute(
        select(Worker.source, Worker.external_id)
        .join(Allocation, Allocation.worker_id == Worker.id)
        .where(Allocation.study_id.in_(study_ids))
        .group_by(Worker.id, Worker.source, Worker.external_id)
        .having(func.count(func.distinct(Allocation.study_id)) > 1)
        .order_by(Worker.id)
    ).all()
    if twice:
        named = ", ".join(f"{source.value}:{who}" for source, who in twice[:5])
        raise ExperimentRefused(
            f"{len(twice)} person(s) already took part in two of these studies ({named}"
            f"{', ...' if len(twice) > 5 else ''}); an experiment gives each person one study, "
            "so these studies cannot form one"
        )
