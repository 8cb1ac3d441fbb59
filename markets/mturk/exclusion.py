"""Who may not work on a study's HITs: the exclusion qualification.

A study's HITs require that a worker does *not* hold its exclusion qualification
(`DoesNotExist`), and everyone who took part is granted it, so the HITs disappear for them.
A study alone has a qualification of its own; the studies of an experiment share one
(study_server/experiments.py), so a worker of any of them sees none of the others' HITs:

- `mturk publish` makes the HIT type require the experiment's qualification and, before any
  HIT is created, grants it to every MTurk worker who has an allocation in a sibling study;
- `mturk sync` grants it to the study's own workers. A study published before it joined an
  experiment has HITs guarded by its own qualification: sync grants that one as well.

The server refuses such a worker in any case (allocation rule 8); the qualification saves
them the wasted click, and keeps them from being paid for work that cannot count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from markets.mturk import errors
from markets.mturk.client import MTurkClient
from study_server.db.models import Allocation, Experiment, Study, Worker, WorkerSource
from study_server.db.store import sibling_study_ids


@dataclass(frozen=True)
class Exclusion:
    """The qualification a study's new HITs require absent, and those older HITs may."""

    name: str
    description: str
    # The study's own qualification, when the experiment's replaced it (older HITs keep it).
    earlier: tuple[str, ...] = ()


@dataclass
class Granted:
    granted: int = 0
    failures: list[str] = field(default_factory=list)


def study_qualification_name(study: Study) -> str:
    return f"advcritic {study.slug} {study.manifest_sha256[:12]} participant"


def experiment_qualification_name(experiment: Experiment) -> str:
    return f"advcritic experiment {experiment.slug} {experiment.key[:12]} participant"


def exclusion_of(study: Study) -> Exclusion:
    """The study's exclusion (read `study.experiment` inside its session)."""
    experiment = study.experiment
    if experiment is None:
        return Exclusion(
            study_qualification_name(study),
            f"Worked on an assignment of the advcritic study {study.slug}; "
            "each person may do only one.",
        )
    return Exclusion(
        experiment_qualification_name(experiment),
        f"Worked on an assignment of the advcritic experiment {experiment.slug}; each person "
        "may do only one assignment of one of its studies.",
        earlier=(study_qualification_name(study),),
    )


def sibling_workers(session: Session, study: Study) -> set[str]:
    """MTurk workers with an allocation in another study of the study's experiment."""
    others = [i for i in sibling_study_ids(session, study_id=study.id) if i != study.id]
    if not others:
        return set()
    return set(
        session.scalars(
            select(Worker.external_id)
            .join(Allocation, Allocation.worker_id == Worker.id)
            .where(Allocation.study_id.in_(others), Worker.source == WorkerSource.mturk)
        )
    )


def grant(
    client: MTurkClient,
    name: str,
    workers: Iterable[str],
    report: Granted,
    *,
    qualification_id: str | None = None,
    missing_ok: bool = False,
) -> None:
    """Grant the qualification `name` to the workers who do not hold it yet. A type MTurk
    does not know is a failure, unless `missing_ok` (an earlier one that was never made)."""
    wanted = set(workers)
    if not wanted:
        return
    qualification_id = qualification_id or client.find_qualification_type(name)
    if qualification_id is None:
        if not missing_ok:
            report.failures.append(
                f"qualification {name!r} not found on MTurk (was the study published here?)"
            )
        return
    holders = set(client.iter_qualified_workers(qualification_id))
    for worker_id in sorted(wanted - holders):
        try:
            client.grant_qualification(qualification_id, worker_id)
            report.granted += 1
        except errors.RequestRejected as error:  # e.g. a workerId MTurk never heard of (forged)
            report.failures.append(f"{worker_id}: {error}")
