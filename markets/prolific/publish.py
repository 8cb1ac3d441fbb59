"""`prolific publish`: a study becomes one Prolific study, published once and only once.

The Prolific study's places are the study's assignments; its `external_study_url` is the
server's `/prolific/<slug>` page with Prolific's URL parameters; reward, time and devices
come from settings; its one completion code is handled by `MANUALLY_REVIEW`, since nothing is
paid before `prolific sync` confirmed the labels behind it.

Exactly once, across crashes (Prolific has no idempotency key):

1. The database: a study whose Prolific study is recorded and published is refused (bad
   input, exit 2: "already published").
2. The internal name, derived from the study's manifest hash (`names.internal_name`): before
   creating, Prolific's studies are searched for it, and after a create whose answer was
   lost, again. A study found there is adopted (its id and completion code recorded), never
   duplicated. The row is committed as soon as Prolific returns the study.
3. PUBLISH is a transition of that one study: repeating it cannot make a second study, and a
   refused PUBLISH is checked against the study's status (an earlier PUBLISH may have landed).

Money first: the total (rewards, Prolific's service fee from settings, VAT) is computed,
compared with Prolific's own cost calculator (a mismatch means the fee setting is wrong:
refused, nothing made), confirmed by the person (typed, or `--confirm-cost`), and checked
against the workspace's available balance, all before anything is created.

Exclusion: the study blocklists a participant group of everyone who took part in it or its
sibling studies (one group per experiment, `names.exclusion_group_name`; `prolific sync`
keeps it filled), and the Prolific studies of its siblings through
`previous_studies_blocklist`; the server refuses them in any case.

Texts: Prolific has no sandbox, so a study whose consent or debrief text still holds
`[EDIT: ...]` placeholders is refused (`UneditedTexts`) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contract.cli import UsageError
from markets.confirm import money
from markets.prolific import errors
from markets.prolific.client import ProlificClient
from markets.prolific.models import (
    CompletionAction,
    CompletionCode,
    Filter,
    ParticipantGroupCreate,
    Study,
    StudyCreate,
    minor_units,
    to_minor,
)
from markets.prolific.names import exclusion_group_name, internal_name, new_completion_code
from markets.prolific.store import participants_of, published_study
from study_server.db.models import ProlificStudy
from study_server.db.models import Study as ServerStudy
from study_server.db.session import begin_write
from study_server.db.store import (
    assignment_count,
    find_study,
    record_event,
    sibling_study_ids,
    utc_now,
)
from study_server.prolific_entry import study_url
from study_server.protocol_texts import unedited_texts
from study_server.settings import ProlificSettings

CENT = Decimal("0.01")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class UneditedTexts(UsageError):
    """The study's texts are not the lab's own yet (placeholders left): nothing published."""


class AlreadyPublished(UsageError):
    """The study is published on Prolific already (bad input: nothing to do twice)."""


class CostMismatch(UsageError):
    """Prolific quotes another total than the fee settings give: the settings are wrong."""


class PublishDeclined(Exception):
    """The person did not confirm the cost: nothing was created or published."""


class PublishConflict(Exception):
    """Another run recorded a different Prolific study for this study at the same time."""


@dataclass(frozen=True)
class CostPlan:
    """What publishing costs, shown and confirmed before anything is created."""

    study_slug: str
    places: int
    reward: Decimal
    fee_fraction: Decimal
    vat_fraction: Decimal
    currency: str
    quoted: Decimal | None = None  # Prolific's own total, when its calculator answered

    @property
    def rewards(self) -> Decimal:
        return self.reward * self.places

    @property
    def fee(self) -> Decimal:
        return (self.rewards * self.fee_fraction).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def vat(self) -> Decimal:
        return (self.fee * self.vat_fraction).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def computed(self) -> Decimal:
        return self.rewards + self.fee + self.vat

    @property
    def total(self) -> Decimal:
        """What is confirmed: Prolific's quote where there is one (it is what is charged)."""
        return self.quoted if self.quoted is not None else self.computed

    def describe(self) -> str:
        fee = f"{(self.fee_fraction * 100).normalize():f}%"
        vat = f" + {money(self.vat, self.currency)} VAT" if self.vat else ""
        source = (
            "Prolific's quote agrees"
            if self.quoted is not None
            else "Prolific's cost calculator did not answer: from settings"
        )
        return (
            f"study {self.study_slug}: {self.places} place(s) x "
            f"{money(self.reward, self.currency)} reward = {money(self.rewards, self.currency)}"
            f" + {money(self.fee, self.currency)} service fee ({fee}){vat} = "
            f"{money(self.total, self.currency)} ({source})"
        )


@dataclass
class PublishResult:
    plan: CostPlan | None
    page_url: str
    prolific_study_id: str = ""
    status: str = ""
    created: bool = False  # this run created the Prolific study
    recovered: bool = False  # found on Prolific by its internal name (an earlier run crashed)
    published_now: bool = False  # this run published it
    group_id: str | None = None
    blocked_studies: list[str] | None = None


def check_page_url(url: str) -> str:
    """Prolific sends real participants only to HTTPS; plain HTTP only on loopback (the fake)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"the study server's public URL must be https://..., got {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise UsageError(
            f"participants' browsers must reach the study over HTTPS; {url!r} is plain http "
            "(set --url https://... or ADVCRITIC_PUBLIC_URL)"
        )
    return url


def check_settings(settings: ProlificSettings, *, allocation_timeout_s: int) -> None:
    if not settings.workspace_id:
        raise UsageError(
            "set ADVCRITIC_PROLIFIC_WORKSPACE_ID to the workspace that pays (its balance and "
            "the study's exclusion group live there)"
        )
    if settings.maximum_allowed_minutes * 60 > allocation_timeout_s:
        raise UsageError(
            f"ADVCRITIC_PROLIFIC_MAXIMUM_ALLOWED_MINUTES={settings.maximum_allowed_minutes} "
            f"must not exceed the server's allocation timeout ({allocation_timeout_s} s, "
            "ADVCRITIC_ALLOCATION_TIMEOUT_S): a participant still within Prolific's time would "
            "find their assignment given to someone else"
        )
    if settings.maximum_allowed_minutes < settings.estimated_minutes:
        raise UsageError(
            "ADVCRITIC_PROLIFIC_MAXIMUM_ALLOWED_MINUTES must be at least "
            "ADVCRITIC_PROLIFIC_ESTIMATED_MINUTES"
        )


def publish(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    settings: ProlificSettings,
    study_slug: str,
    public_url: str,
    allocation_timeout_s: int,
    confirm: Callable[[CostPlan], bool],
    allow_unedited_texts: bool = False,
) -> PublishResult:
    """Create (or find) the study's Prolific study and publish it; see the module. Prolific
    has no sandbox, so texts still holding placeholders are refused (`UneditedTexts`)
    unless `allow_unedited_texts`."""
    check_settings(settings, allocation_timeout_s=allocation_timeout_s)
    page_url = study_url(check_page_url(public_url), study_slug)
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        places = assignment_count(session, study_id=study.id)
        row = published_study(session, study_id=study.id)
        siblings = [i for i in sibling_study_ids(session, study_id=study.id) if i != study.id]
        blocked = _sibling_prolific_studies(session, siblings)
        sibling_people = participants_of(session, study_ids=siblings)
        group_name = exclusion_group_name(study)
        unedited = unedited_texts(session, study_id=study.id)
    if unedited and not allow_unedited_texts:
        raise UneditedTexts(
            "the study's texts still hold [EDIT: ...] placeholders: "
            + "; ".join(unedited)
            + ". Prolific has real participants only: attach the texts your ethics board "
            "approved (study-server protocol attach), or pass --allow-unedited-texts if these "
            "really are they; nothing published"
        )
    if row is not None and row.published_at is not None:
        raise AlreadyPublished(
            f"study {study.slug} is already published on Prolific as study "
            f"{row.prolific_study_id} ({row.status}); nothing done -- `prolific status "
            f"--study {study.slug}` shows how far it got"
        )
    result = PublishResult(plan=None, page_url=page_url, blocked_studies=blocked)
    remote = (
        client.get_study(row.prolific_study_id)
        if row is not None
        else client.find_study(internal_name(study), settings.project_id)
    )
    if remote is not None and row is None:
        row = _record(sessions, study, remote, page_url, group_id=None)
        result.recovered = True
    if remote is None or remote.status == "UNPUBLISHED":
        result.plan = _plan(client, settings, study, places, remote)
        if not confirm(result.plan):
            raise PublishDeclined(f"not confirmed; nothing published ({result.plan.describe()})")
        _check_balance(client, settings, result.plan)
    if remote is None:
        group = _exclusion_group(client, settings, study, group_name, sibling_people)
        result.group_id = group
        remote, result.recovered = _create(
            client, settings, study, places, page_url, group, blocked
        )
        result.created = not result.recovered
        row = _record(sessions, study, remote, page_url, group_id=group)
    if remote.status == "UNPUBLISHED":
        remote = _publish(client, remote.id)
        result.published_now = True
    result.prolific_study_id, result.status = remote.id, remote.status
    result.group_id = result.group_id or (row.exclusion_group_id if row else None)
    if result.group_id is None:  # a study recovered after a crash: its group, by name
        group = client.find_group(settings.workspace_id or "", group_name)
        result.group_id = group.id if group else None
    _mark_published(sessions, study, remote, result)
    return result


def _sibling_prolific_studies(session: Session, siblings: list[int]) -> list[str]:
    ids = []
    for sibling in siblings:
        row = published_study(session, study_id=sibling)
        if row is not None:
            ids.append(row.prolific_study_id)
    return ids


def _plan(
    client: ProlificClient,
    settings: ProlificSettings,
    study: ServerStudy,
    places: int,
    remote: Study | None,
) -> CostPlan:
    """The cost; for a study already on Prolific (a rerun after a crash), of that study."""
    if remote is not None:
        places, reward_minor = remote.total_available_places, int(remote.reward)
    else:
        reward_minor = to_minor(settings.reward)
    plan = CostPlan(
        study_slug=study.slug,
        places=places,
        reward=minor_units(reward_minor),
        fee_fraction=settings.service_fee_fraction,
        vat_fraction=settings.vat_fraction,
        currency=settings.currency,
    )
    quote = client.quote(reward_minor=reward_minor, places=places)
    if quote is None:
        return plan
    quoted = minor_units(quote.total_cost)
    if abs(quoted - plan.computed) > CENT * places:  # more than rounding, place by place
        raise CostMismatch(
            f"Prolific quotes {money(quoted, plan.currency)} for {places} place(s) at "
            f"{money(plan.reward, plan.currency)}, the settings give "
            f"{money(plan.computed, plan.currency)} (service fee "
            f"ADVCRITIC_PROLIFIC_SERVICE_FEE_FRACTION={settings.service_fee_fraction}, "
            f"ADVCRITIC_PROLIFIC_VAT_FRACTION={settings.vat_fraction}): set them to your "
            "workspace's rates; nothing published"
        )
    return CostPlan(**{**plan.__dict__, "quoted": quoted})


def _check_balance(client: ProlificClient, settings: ProlificSettings, plan: CostPlan) -> None:
    balance = client.balance(settings.workspace_id or "")
    available = minor_units(balance.available_balance)
    if available < plan.total:
        raise errors.InsufficientFunds(
            f"the workspace's available balance is {money(available, balance.currency_code)}, "
            f"publishing costs {money(plan.total, plan.currency)}; add funds in the Prolific "
            "app (the API cannot), or publish fewer places"
        )


def _exclusion_group(
    client: ProlificClient,
    settings: ProlificSettings,
    study: ServerStudy,
    name: str,
    sibling_people: set[str],
) -> str:
    """The id of the study's participant group `name` (found by name, or made), with
    everyone who took part in a sibling study in it."""
    workspace = settings.workspace_id or ""
    group = client.find_group(workspace, name)
    if group is None:
        try:
            group = client.create_group(
                _group_spec(workspace, name, study.slug, sorted(sibling_people))
            )
            return group.id
        except (errors.OutcomeUnknown, errors.ServiceFault):
            group = client.find_group(workspace, name)  # made after all?
            if group is None:
                raise
    missing = sorted(sibling_people - client.group_members(group.id))
    if missing:
        client.add_to_group(group.id, missing)
    return group.id


def _group_spec(workspace: str, name: str, slug: str, members: list[str]) -> ParticipantGroupCreate:
    return ParticipantGroupCreate(
        name=name,
        workspace_id=workspace,
        description=f"Everyone who took part in the advcritic study {slug} (or its "
        "experiment); its studies blocklist this group, so each person takes part once.",
        participant_ids=members,
    )


def study_spec(
    settings: ProlificSettings,
    study: ServerStudy,
    *,
    places: int,
    page_url: str,
    code: str,
    group_id: str | None,
    blocked_studies: list[str],
) -> StudyCreate:
    """The body that creates the study's Prolific study."""
    filters = []
    if group_id:
        filters.append(Filter(filter_id="participant_group_blocklist", selected_values=[group_id]))
    if blocked_studies:
        filters.append(
            Filter(filter_id="previous_studies_blocklist", selected_values=blocked_studies)
        )
    return StudyCreate(
        name=settings.name,
        internal_name=internal_name(study),
        description=settings.description,
        external_study_url=page_url,
        completion_codes=[
            CompletionCode(code=code, actions=[CompletionAction(action="MANUALLY_REVIEW")])
        ],
        total_available_places=places,
        estimated_completion_time=settings.estimated_minutes,
        maximum_allowed_time=settings.maximum_allowed_minutes,
        reward=to_minor(settings.reward),
        device_compatibility=list(settings.device_compatibility),
        filters=filters,
        project=settings.project_id,
    )


def _create(
    client: ProlificClient,
    settings: ProlificSettings,
    study: ServerStudy,
    places: int,
    page_url: str,
    group_id: str,
    blocked: list[str],
) -> tuple[Study, bool]:
    """The created study, or the one an unanswered create made after all (and True)."""
    spec = study_spec(
        settings,
        study,
        places=places,
        page_url=page_url,
        code=new_completion_code(),
        group_id=group_id,
        blocked_studies=blocked,
    )
    try:
        return client.create_study(spec), False
    except (errors.OutcomeUnknown, errors.ServiceFault):
        found = client.find_study(spec.internal_name, settings.project_id)
        if found is None:
            raise
        return found, True


def _publish(client: ProlificClient, prolific_study_id: str) -> Study:
    try:
        return client.transition_study(prolific_study_id, "PUBLISH")
    except (errors.RequestRejected, errors.ServiceFault, errors.Unreachable):
        current = client.get_study(prolific_study_id)  # an earlier PUBLISH may have landed
        if current.status == "UNPUBLISHED":
            raise
        return current


def _record(
    sessions: sessionmaker[Session],
    study: ServerStudy,
    remote: Study,
    page_url: str,
    *,
    group_id: str | None,
) -> ProlificStudy:
    """Store the Prolific study as soon as it is known (the completion code with it)."""
    code = remote.completion_code()
    if not code:
        raise errors.ProlificError(
            f"Prolific study {remote.id} ({remote.internal_name}) has no COMPLETED "
            "completion code; fix or delete it in the Prolific app, then publish again"
        )
    with sessions() as session:
        begin_write(session)
        row = published_study(session, study_id=study.id)
        if row is None:
            row = ProlificStudy(study_id=study.id, prolific_study_id=remote.id)
            session.add(row)
        elif row.prolific_study_id != remote.id:
            raise PublishConflict(
                f"study {study.slug} is recorded as Prolific study {row.prolific_study_id}, "
                f"not {remote.id}; is another `prolific publish` running for it?"
            )
        row.internal_name = remote.internal_name or internal_name(study)
        row.completion_code = code
        row.external_study_url = remote.external_study_url or page_url
        row.places = remote.total_available_places
        row.reward_minor = int(remote.reward)
        row.status = remote.status
        row.exclusion_group_id = group_id or row.exclusion_group_id
        try:
            session.commit()
        except IntegrityError as error:
            session.rollback()
            raise PublishConflict(
                f"Prolific study {remote.id} is already recorded for another study"
            ) from error
        return row


def _mark_published(
    sessions: sessionmaker[Session], study: ServerStudy, remote: Study, result: PublishResult
) -> None:
    with sessions() as session:
        begin_write(session)
        row = published_study(session, study_id=study.id)
        row.status = remote.status
        row.published_at = row.published_at or utc_now()
        if result.group_id:
            row.exclusion_group_id = result.group_id
        record_event(
            session,
            study_id=study.id,
            kind="prolific_published",
            detail={
                "prolific_study": remote.id,
                "status": remote.status,
                "created": result.created,
                "recovered": result.recovered,
                "page_url": result.page_url,
                "exclusion_group": result.group_id,
                "blocked_studies": result.blocked_studies or [],
                "cost": str(result.plan.total) if result.plan else None,
            },
        )
        session.commit()
