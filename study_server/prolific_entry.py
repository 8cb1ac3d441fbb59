"""Prolific participants at the study: who they are, which session, and the code at the end.

Prolific opens the study's `external_study_url` with ``PROLIFIC_PID``, ``STUDY_ID`` and
``SESSION_ID`` filled in: 24-character hexadecimal ids (``SESSION_ID`` is the id of the
participant's submission on Prolific). Anyone can type such a URL, so:

- each value must have Prolific's format, and STUDY_ID must be the Prolific study this
  study was published as (`prolific publish`); otherwise a 4xx naming the parameter;
- a participant is bound to the session of their first visit (`prolific_sessions`): the
  same PROLIFIC_PID with another SESSION_ID is refused (403), and so is a SESSION_ID bound to
  another participant, so nobody takes over someone's assignment by knowing their id;
- a participant of a sibling study (`store.sibling_study_ids`: other studies of the same
  experiment) is refused (409, allocation rule 8, checked before the session is bound), and so
  is one whose submission here was flagged and returned to the pool (403); holding an
  allocation here already means the same one again (a reload);
- nothing is allocated before the participant agreed to the consent text (the accept carries
  its SHA-256, as for every source);
- the completion code is revealed only to the bound (participant, session) whose labels the
  server stored. `prolific sync` then confirms each submission against Prolific's own list
  of submissions, where a forged URL never appears, and returns what it cannot confirm to
  the pool (`study_server.release`).

Each step is its own transaction: the binding is committed first (its unique constraints
settle two sessions racing for one participant), then the shared `operations.accept` /
`operations.submit` do the allocation and the labels as for every other source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study_server.allocation import AllocationPolicy, refuse_sibling_participant
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Assignment,
    ProlificSession,
    ProlificStudy,
    Study,
    Verification,
    Worker,
    WorkerSource,
)
from study_server.db.session import begin_write
from study_server.db.store import find_study
from study_server.errors import ForbiddenError, InvalidInputError, NotFoundError
from study_server.operations import (
    Accepted,
    AcceptOutcome,
    Claimant,
    LabelInput,
    Submitted,
    WorkerRef,
    accept,
    given_debrief,
    save_label,
    submit,
)

PROLIFIC_ID_PATTERN = r"^[0-9a-fA-F]{24}$"
_PROLIFIC_ID = re.compile(PROLIFIC_ID_PATTERN)
_NOT_CONFIRMED = (
    "your submission to this study was not confirmed by Prolific (see `prolific sync`), so "
    "you cannot take part again"
)
# The names Prolific gives the parameters in the study URL (its `{{%...%}}` placeholders).
URL_PARAMETERS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


@dataclass(frozen=True)
class ProlificIds:
    """What Prolific put in the study URL, checked and in lower case."""

    participant_id: str
    study_id: str
    session_id: str

    @property
    def worker(self) -> WorkerRef:
        return WorkerRef(source=WorkerSource.prolific, external_id=self.participant_id)


def is_prolific_id(value: str) -> bool:
    return bool(_PROLIFIC_ID.fullmatch(value))


def parse_ids(
    participant_id: str | None, study_id: str | None, session_id: str | None
) -> ProlificIds:
    """The three URL parameters, or `InvalidInputError` naming the first one that is wrong."""
    values = dict(zip(URL_PARAMETERS, (participant_id, study_id, session_id), strict=True))
    for name, value in values.items():
        if not value:
            raise InvalidInputError(f"{name} is missing: open this study from Prolific")
        if not is_prolific_id(value):
            raise InvalidInputError(
                f"{name} must be a Prolific id (24 hexadecimal characters), got {value[:40]!r}"
            )
    return ProlificIds(*(value.lower() for value in values.values()))  # type: ignore[union-attr]


def study_url(public_url: str, slug: str) -> str:
    """The study's `external_study_url`: the page, with Prolific's placeholders."""
    query = urlencode({name: f"{{{{%{name}%}}}}" for name in URL_PARAMETERS}, safe="{}%")
    return f"{public_url.rstrip('/')}/prolific/{slug}?{query}"


def published_study(session: Session, study: Study) -> ProlificStudy:
    """The Prolific study `study` was published as, or `NotFoundError`."""
    published = session.scalar(select(ProlificStudy).where(ProlificStudy.study_id == study.id))
    if published is None:
        raise NotFoundError(f"study {study.slug!r} is not published on Prolific")
    return published


def check_study(session: Session, *, study_slug: str, ids: ProlificIds) -> Study:
    """The study, if STUDY_ID is the Prolific study it was published as."""
    study = find_study(session, study_slug)
    if published_study(session, study).prolific_study_id != ids.study_id:
        raise NotFoundError(
            f"STUDY_ID {ids.study_id} is not the Prolific study of {study.slug!r}; "
            "open this study from Prolific"
        )
    return study


def enter(
    *,
    session: Session,
    study_slug: str,
    ids: ProlificIds,
    consent_sha256: str,
    now: datetime,
    policy: AllocationPolicy,
    address: str | None = None,
) -> Accepted:
    """Give the participant their assignment of the study (the one they hold, on a reload),
    once they agreed to its consent text. Anyone can invent a PROLIFIC_PID, so the same
    per-address limit as for MTurk applies until `prolific sync` confirms or releases the hold."""
    finished = _admit(session, study_slug, ids)
    if finished is not None:
        return finished
    return accept(
        session=session,
        study_slug=study_slug,
        claimant=Claimant(worker=ids.worker, address=address),
        consent_sha256=consent_sha256,
        now=now,
        policy=policy,
    )


def _admit(session: Session, study_slug: str, ids: ProlificIds) -> Accepted | None:
    """Check the participant may take part and bind their session; if they already
    submitted (with this session), the `submitted` outcome that leads to the code."""
    begin_write(session)
    study = check_study(session, study_slug=study_slug, ids=ids)
    refuse_sibling_participant(
        session,
        study_id=study.id,
        experiment_id=study.experiment_id,
        source=WorkerSource.prolific,
        external_id=ids.participant_id,
    )
    bound = session.scalar(
        select(ProlificSession)
        .where(
            ProlificSession.study_id == study.id,
            ProlificSession.participant_id == ids.participant_id,
        )
        .with_for_update()
    )
    if bound is None:
        _bind(session, study, ids)
    elif bound.session_id != ids.session_id:
        raise ForbiddenError(_other_session(ids))
    held = _allocation(session, study.id, ids.participant_id)
    if held is not None and held.verification == Verification.flagged:
        raise ForbiddenError(_NOT_CONFIRMED)
    finished = None
    if held is not None and held.status == AllocationStatus.submitted:
        assignment = session.get_one(Assignment, held.assignment_id)
        finished = Accepted(
            outcome=AcceptOutcome.submitted,
            assignment_public_id=assignment.public_id,
            class_names=list(study.class_names),
            expires_at=held.expires_at,
            item_images=(),
            debrief=given_debrief(session, held),
        )
    session.commit()
    return finished


def _bind(session: Session, study: Study, ids: ProlificIds) -> None:
    taken = session.scalar(
        select(ProlificSession.id).where(ProlificSession.session_id == ids.session_id)
    )
    if taken is not None:
        raise ForbiddenError(
            f"SESSION_ID {ids.session_id} belongs to another participant's Prolific session"
        )
    session.add(
        ProlificSession(
            study_id=study.id,
            participant_id=ids.participant_id,
            session_id=ids.session_id,
            prolific_study_id=ids.study_id,
        )
    )
    try:
        session.flush()
    except IntegrityError as error:  # the same participant or session, bound a moment ago
        raise ForbiddenError(_other_session(ids)) from error


def _other_session(ids: ProlificIds) -> str:
    return (
        f"PROLIFIC_PID {ids.participant_id} does not match SESSION_ID {ids.session_id}: this "
        "participant takes part in another Prolific session; open the study from that "
        "submission on Prolific"
    )


def _allocation(session: Session, study_id: int, participant_id: str) -> Allocation | None:
    return session.scalar(
        select(Allocation)
        .join(Worker, Worker.id == Allocation.worker_id)
        .where(
            Allocation.study_id == study_id,
            Worker.source == WorkerSource.prolific,
            Worker.external_id == participant_id,
        )
    )


def _check_binding(session: Session, study: Study, ids: ProlificIds) -> None:
    bound = session.scalar(
        select(ProlificSession.session_id).where(
            ProlificSession.study_id == study.id,
            ProlificSession.participant_id == ids.participant_id,
        )
    )
    if bound is None:
        raise ForbiddenError(f"PROLIFIC_PID {ids.participant_id} has no assignment here")
    if bound != ids.session_id:
        raise ForbiddenError(_other_session(ids))


def _check_participant(session: Session, assignment_public_id: str, ids: ProlificIds) -> None:
    """The assignment's study is the participant's, in the session they were bound to, and
    their work was not flagged; ends the read so the operation can begin its write."""
    study = session.scalar(
        select(Study)
        .join(Assignment, Assignment.study_id == Study.id)
        .where(Assignment.public_id == assignment_public_id)
    )
    if study is None:
        raise NotFoundError("no such assignment")
    check_study(session, study_slug=study.slug, ids=ids)
    _check_binding(session, study, ids)
    held = _allocation(session, study.id, ids.participant_id)
    if held is not None and held.verification == Verification.flagged:
        raise ForbiddenError(_NOT_CONFIRMED)
    session.commit()  # the checks read; the operation starts its own write transaction


def save_participant_label(
    *,
    session: Session,
    assignment_public_id: str,
    ids: ProlificIds,
    item: LabelInput,
    now: datetime,
) -> None:
    """Keep one label as the participant gives it (their page resumes after a reload)."""
    _check_participant(session, assignment_public_id, ids)
    save_label(
        session=session,
        assignment_public_id=assignment_public_id,
        worker=ids.worker,
        mturk_assignment_id=None,
        item=item,
        now=now,
    )


def submit_labels(
    *,
    session: Session,
    assignment_public_id: str,
    ids: ProlificIds,
    labels: list[LabelInput],
    now: datetime,
) -> Submitted:
    """Store the participant's labels, if they come with the session they were bound to."""
    _check_participant(session, assignment_public_id, ids)
    return submit(
        session=session,
        assignment_public_id=assignment_public_id,
        worker=ids.worker,
        mturk_assignment_id=None,
        labels=labels,
        now=now,
    )


def completion_url(*, session: Session, study_slug: str, ids: ProlificIds, base_url: str) -> str:
    """Prolific's completion URL with the study's code, for a participant whose labels the
    server stored in this session (and so gave the debrief, which the page shows before it
    asks for this)."""
    study = check_study(session, study_slug=study_slug, ids=ids)
    _check_binding(session, study, ids)
    held = _allocation(session, study.id, ids.participant_id)
    if held is None or held.status != AllocationStatus.submitted:
        raise ForbiddenError(
            "no labels are stored for this participant and session yet: finish the images first"
        )
    if held.verification == Verification.flagged:
        raise ForbiddenError(_NOT_CONFIRMED)
    code = published_study(session, study).completion_code
    return f"{base_url}?{urlencode({'cc': code})}"
