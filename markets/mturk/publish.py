"""`mturk publish`: one HIT per assignment of a study, published once and only once.

Idempotency has three layers, because a crash can fall between MTurk creating a HIT and our
database recording it:

1. The database: a slot whose HIT is stored (``mturk_hits``) is never published again.
2. ``UniqueRequestToken``: derived from the study's manifest hash, the marketplace and the
   slot, never from the clock, so a retry within MTurk's 24-hour token memory cannot create a
   second HIT (MTurk answers HitAlreadyExists instead).
3. ``RequesterAnnotation`` carries the same token; before publishing, and after any refusal
   of a create, the requester's HITs are listed and a HIT whose annotation names a missing
   slot is adopted instead of re-created. This also covers re-runs after the 24 hours.

Each HIT is committed to the database as soon as MTurk returns it.

Who may work: the HITs require the absence of the study's exclusion qualification, the
experiment's when the study is in one (markets/mturk/exclusion.py); before any HIT is made,
the workers of the experiment's other studies are granted it. On the live marketplace a
study whose consent or debrief text still holds `[EDIT: ...]` placeholders is refused
(`UneditedTexts`) unless the requester says otherwise: a paid study without the lab's own
consent text is an ethics violation, not a detail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.exclusion import Exclusion, Granted, exclusion_of, grant, sibling_workers
from markets.mturk.question import QuestionError, external_question_xml
from markets.mturk.records import (
    LOCALE_QUALIFICATION,
    NUMBER_APPROVED_QUALIFICATION,
    PERCENT_APPROVED_QUALIFICATION,
    Hit,
    HitTypeSpec,
    QualificationRequirement,
)
from markets.mturk.store import published_hits
from study_server.db.models import MTurkHit, Study
from study_server.db.session import begin_write
from study_server.db.store import assignment_count, find_study, record_event
from study_server.protocol_texts import unedited_texts
from study_server.settings import MTurkSettings

CENT = Decimal("0.01")


def marketplace_name(sandbox: bool) -> str:
    return "sandbox" if sandbox else "live"


def request_token(study: Study, *, slot: int, sandbox: bool) -> str:
    """The UniqueRequestToken of a slot's HIT: the same on every run, at most 64 characters."""
    key = f"advcritic-hit|{study.manifest_sha256}|{marketplace_name(sandbox)}|{slot}"
    return "advcritic-" + hashlib.sha256(key.encode()).hexdigest()[:48]


def annotation(study: Study, *, slot: int, sandbox: bool) -> str:
    """RequesterAnnotation: readable in the requester UI and unique to the slot."""
    return f"advcritic {study.slug} slot {slot} {request_token(study, slot=slot, sandbox=sandbox)}"


def hit_type_spec(
    settings: MTurkSettings, *, exclusion_qualification_id: str, sandbox: bool
) -> HitTypeSpec:
    """Money, time and who may work, from settings. The worker-history requirements apply
    only on the live site: sandbox workers have no approval record to meet them with."""
    requirements = [QualificationRequirement(exclusion_qualification_id, "DoesNotExist")]
    if not sandbox:
        if settings.min_approval_rate is not None:
            requirements.append(
                QualificationRequirement(
                    PERCENT_APPROVED_QUALIFICATION,
                    "GreaterThanOrEqualTo",
                    (settings.min_approval_rate,),
                )
            )
        if settings.min_approved_hits is not None:
            requirements.append(
                QualificationRequirement(
                    NUMBER_APPROVED_QUALIFICATION,
                    "GreaterThanOrEqualTo",
                    (settings.min_approved_hits,),
                )
            )
        if settings.allowed_locales:
            requirements.append(
                QualificationRequirement(
                    LOCALE_QUALIFICATION, "In", locales=tuple(settings.allowed_locales)
                )
            )
    return HitTypeSpec(
        title=settings.title,
        description=settings.description,
        keywords=settings.keywords,
        reward=settings.reward_usd,
        assignment_duration_s=settings.assignment_duration_s,
        auto_approval_delay_s=settings.auto_approval_delay_s,
        requirements=tuple(requirements),
    )


@dataclass(frozen=True)
class PublishPlan:
    """What a run would publish and what it costs, shown before anything is created."""

    study_slug: str
    sandbox: bool
    total_slots: int
    published: int
    slots: tuple[int, ...]
    reward: Decimal
    fee_fraction: Decimal

    @property
    def fee_per_hit(self) -> Decimal:
        return (self.reward * self.fee_fraction).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def cost_per_hit(self) -> Decimal:
        return self.reward + self.fee_per_hit

    @property
    def total_cost(self) -> Decimal:
        return self.cost_per_hit * len(self.slots)

    def describe(self) -> str:
        where = (
            "the MTurk sandbox (no money is spent)"
            if self.sandbox
            else "the LIVE MTurk marketplace"
        )
        return (
            f"study {self.study_slug}: {len(self.slots)} HIT(s) to publish on {where} "
            f"({self.published} of {self.total_slots} already published); "
            f"{len(self.slots)} x (${self.reward:.2f} reward + ${self.fee_per_hit:.2f} fee) "
            f"= ${self.total_cost:.2f}"
        )


@dataclass
class PublishResult:
    plan: PublishPlan
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    hit_type_id: str | None = None
    hit_group_id: str | None = None
    exclusion: str | None = None  # the qualification the HITs require absent
    siblings_excluded: Granted = field(default_factory=Granted)
    # Texts still holding placeholders (refused on the live site, said on the sandbox).
    unedited: list[str] = field(default_factory=list)


class UneditedTexts(ValueError):
    """A live publish of a study whose consent or debrief text is not the lab's own yet."""


def check_texts(unedited: list[str], *, sandbox: bool, allow: bool) -> None:
    if unedited and not sandbox and not allow:
        raise UneditedTexts(
            "the study's texts still hold [EDIT: ...] placeholders: "
            + "; ".join(unedited)
            + ". Attach the texts your ethics board approved (study-server protocol attach), "
            "or pass --allow-unedited-texts if these really are they; nothing published"
        )


class PublishConflict(Exception):
    """Another run recorded a different HIT for a slot at the same time."""


class PublishDeclined(Exception):
    """The person at the terminal did not confirm the cost: nothing was published."""


class HoldOutlastsAssignment(ValueError):
    """The server's allocation timeout is longer than the HITs' assignment duration."""


def check_hold(*, allocation_timeout_s: int, assignment_duration_s: int) -> None:
    """A hold on the server must end before the worker's MTurk assignment can: past that,
    MTurk has taken the HIT back while the server still keeps its images from the pool."""
    if allocation_timeout_s > assignment_duration_s:
        raise HoldOutlastsAssignment(
            f"ADVCRITIC_ALLOCATION_TIMEOUT_S ({allocation_timeout_s} s) is longer than the HITs' "
            f"assignment duration ADVCRITIC_MTURK_ASSIGNMENT_DURATION_S ({assignment_duration_s} "
            "s): lower the first or raise the second; nothing published"
        )


def publish(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    settings: MTurkSettings,
    study_slug: str,
    page_url: str,
    max_hits: int | None = None,
    confirm: Callable[[PublishPlan], bool] = lambda plan: True,
    allocation_timeout_s: int | None = None,
    allow_unedited_texts: bool = False,
) -> PublishResult:
    """Publish the study's missing HITs (all of them, or up to `max_hits` in total).

    `allocation_timeout_s`, the study server's hold, must not exceed the HITs' assignment
    duration (`check_hold`); each HIT's duration is stored, and the server caps holds by it.
    On the live site the study's texts must be the lab's own (`check_texts`).
    """
    sandbox = client.sandbox
    if allocation_timeout_s is not None:
        check_hold(
            allocation_timeout_s=allocation_timeout_s,
            assignment_duration_s=settings.assignment_duration_s,
        )
    if settings.endpoint_url is None and not page_url.startswith("https://"):
        raise QuestionError(
            f"MTurk only frames HTTPS pages; {page_url!r} is not (set --url https://...)"
        )
    question = external_question_xml(page_url, settings.frame_height)
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        total = assignment_count(session, study_id=study.id)
        done = published_hits(session, study_id=study.id, sandbox=sandbox)
        unedited = unedited_texts(session, study_id=study.id)
        exclusion = exclusion_of(study)
        siblings = sibling_workers(session, study)
    check_texts(unedited, sandbox=sandbox, allow=allow_unedited_texts)
    wanted = range(total if max_hits is None else min(total, max_hits))
    missing = [slot for slot in wanted if slot not in done]
    result = PublishResult(plan=_plan(study, settings, sandbox, total, len(done), missing))
    result.exclusion, result.unedited = exclusion.name, unedited
    if not missing:
        return result

    by_annotation = {annotation(study, slot=slot, sandbox=sandbox): slot for slot in missing}
    already_there = _find_published(client, by_annotation)
    for note, hit in already_there.items():
        _store(sessions, study, by_annotation[note], hit, sandbox, result.adopted)
    missing = [
        slot
        for slot in missing
        if annotation(study, slot=slot, sandbox=sandbox) not in already_there
    ]
    result.plan = _plan(study, settings, sandbox, total, len(done) + len(result.adopted), missing)
    if not missing:
        return result
    if not confirm(result.plan):
        raise PublishDeclined(f"not confirmed; nothing published ({result.plan.describe()})")
    balance = client.balance()
    if balance.available < result.plan.total_cost:
        raise errors.InsufficientFunds(
            f"the {marketplace_name(sandbox)} requester balance is ${balance.available:.2f}, "
            f"publishing costs ${result.plan.total_cost:.2f}; "
            "add funds or publish fewer HITs (--max-hits)"
        )
    qualification_id = _exclude_siblings(client, exclusion, siblings, result)
    result.hit_type_id = client.create_hit_type(
        hit_type_spec(settings, exclusion_qualification_id=qualification_id, sandbox=sandbox)
    )
    for slot in missing:
        hit = _create_or_find(
            client, study, slot, sandbox, result.hit_type_id, question, settings.lifetime_s
        )
        if hit.assignment_duration_s is None:  # CreateHIT's answer names it; be sure anyway
            hit = replace(hit, assignment_duration_s=settings.assignment_duration_s)
        result.hit_group_id = result.hit_group_id or hit.hit_group_id
        _store(sessions, study, slot, hit, sandbox, result.created)
    with sessions() as session:
        begin_write(session)
        record_event(
            session,
            study_id=study.id,
            kind="mturk_published",
            detail={
                "marketplace": marketplace_name(sandbox),
                "created": len(result.created),
                "adopted": len(result.adopted),
                "hit_type_id": result.hit_type_id,
                "page_url": page_url,
                "cost_usd": str(result.plan.total_cost),
                "exclusion": exclusion.name,
                "siblings_excluded": result.siblings_excluded.granted,
                "unedited_texts": unedited,
            },
        )
        session.commit()
    return result


def _exclude_siblings(
    client: MTurkClient, exclusion: Exclusion, siblings: set[str], result: PublishResult
) -> str:
    """The exclusion qualification's id (made if need be), granted first to the workers of
    the experiment's other studies, so none of them sees these HITs."""
    qualification_id = client.ensure_qualification_type(exclusion.name, exclusion.description)
    grant(
        client,
        exclusion.name,
        siblings,
        result.siblings_excluded,
        qualification_id=qualification_id,
    )
    return qualification_id


def _plan(
    study: Study,
    settings: MTurkSettings,
    sandbox: bool,
    total: int,
    published: int,
    slots: list[int],
) -> PublishPlan:
    return PublishPlan(
        study_slug=study.slug,
        sandbox=sandbox,
        total_slots=total,
        published=published,
        slots=tuple(slots),
        reward=settings.reward_usd.quantize(CENT),
        fee_fraction=settings.fee_fraction,
    )


def _find_published(client: MTurkClient, by_annotation: dict[str, int]) -> dict[str, Hit]:
    """HITs already on MTurk for these annotations (made by a run that crashed), by annotation."""
    found: dict[str, Hit] = {}
    for hit in client.iter_hits():
        if hit.annotation in by_annotation and hit.annotation not in found:
            found[hit.annotation] = hit
    return found


def _create_or_find(
    client: MTurkClient,
    study: Study,
    slot: int,
    sandbox: bool,
    hit_type_id: str,
    question: str,
    lifetime_s: int,
) -> Hit:
    note = annotation(study, slot=slot, sandbox=sandbox)
    try:
        return client.create_hit(
            hit_type_id=hit_type_id,
            question=question,
            lifetime_s=lifetime_s,
            annotation=note,
            unique_request_token=request_token(study, slot=slot, sandbox=sandbox),
        )
    except (errors.DuplicateRequest, errors.RequestRejected):
        # The token was used already (a create whose answer we never saw): the HIT exists.
        existing = _find_published(client, {note: slot})
        if note in existing:
            return existing[note]
        raise


def _store(
    sessions: sessionmaker[Session],
    study: Study,
    slot: int,
    hit: Hit,
    sandbox: bool,
    into: list[str],
) -> None:
    """Record the slot's HIT; a concurrent run that recorded the same HIT first is fine."""
    with sessions() as session:
        begin_write(session)
        if session.scalar(select(MTurkHit.id).where(MTurkHit.hit_id == hit.hit_id)) is not None:
            return
        session.add(
            MTurkHit(
                study_id=study.id,
                slot=slot,
                sandbox=sandbox,
                hit_id=hit.hit_id,
                hit_type_id=hit.hit_type_id,
                unique_request_token=request_token(study, slot=slot, sandbox=sandbox),
                status=hit.status or "Assignable",
                expires_at=hit.expires_at,
                assignment_duration_s=hit.assignment_duration_s,
            )
        )
        try:
            session.commit()
        except IntegrityError as error:
            session.rollback()
            raise PublishConflict(
                f"slot {slot} of {study.slug} already has a different HIT in the database; "
                "is another `mturk publish` running for this study?"
            ) from error
    into.append(hit.hit_id)
