"""The labeling JSON API the HIT page talks to: the consent text, decline, accept, item
images, saving labels, submit (which answers with the debrief).

Refusals (unknown study or HIT, a worker acting on someone else's assignment, a second
submission with other labels...) answer their 4xx with a reason and are written to the
audit of events; nothing else is stored by a refused request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, HTTPException, Path, Request, Response
from sqlalchemy.orm import Session

from study_server.allocation import AllocationPolicy
from study_server.api.deps import SettingsDep, in_connection, in_database, in_session
from study_server.api.route_paths import route_path
from study_server.api.schemas import (
    MAX_ITEMS,
    AcceptRequest,
    AcceptResponse,
    DeclineRequest,
    DeclineResponse,
    ProtocolTextOut,
    SavedLabel,
    SaveLabelRequest,
    SaveLabelResponse,
    SubmitRequest,
    SubmitResponse,
)
from study_server.db.models import TextKind, WorkerSource
from study_server.db.rendered import Database
from study_server.db.store import find_study, record_event
from study_server.errors import ForbiddenError, NotFoundError, StudyError
from study_server.invitations import LabInvite, find_invite
from study_server.links import submit_host_among
from study_server.operations import (
    Accepted,
    Claimant,
    LabelInput,
    MTurkContext,
    Submitted,
    WorkerRef,
    accept,
    draft_values,
    item_image,
    save_draft,
    save_label,
    submit,
)
from study_server.protocol_texts import ConsentChanged, ShownText, require_text
from study_server.slug import Slug

router = APIRouter(prefix="/api", tags=["labeling"])
# The answer to a saved label, encoded once: the most frequent response of a study.
SAVED_JSON = SaveLabelResponse(status="saved").model_dump_json().encode()

PublicId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Position = Annotated[int, Path(ge=0, lt=MAX_ITEMS)]
T = TypeVar("T")
D = TypeVar("D", bound=Database)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditedWork(Generic[D, T]):
    """`work`, with a refusal noted in the audit of events before it becomes its HTTP error.
    `work` takes a Session, or a `Database` (a session or a bare driver connection). A value,
    not a closure, so that it may run in a database process (`db/processes.py`)."""

    action: str
    worker: WorkerRef | None
    detail: dict[str, Any]
    work: Callable[[D], T]

    def __call__(self, session: D) -> T:
        try:
            return self.work(session)
        except StudyError as error:
            session.rollback()
            record_event(
                session,
                kind="refused",
                worker=self.worker.external_id if self.worker else None,
                detail={
                    "action": self.action,
                    "status": error.status,
                    "reason": error.reason,
                    **self.detail,
                },
            )
            session.commit()
            raise HTTPException(error.status, error.reason, headers=error.headers) from error


def text_out(text: ShownText | None) -> ProtocolTextOut | None:
    return None if text is None else ProtocolTextOut(**asdict(text))


async def accepting(
    request: Request,
    slug: str,
    run: Callable[[Database], Accepted],
    *,
    where: Callable[[Request, Callable[[Database], Accepted]], Awaitable[Accepted]] = in_database,
) -> Accepted:
    """Run an accept (`where`: on a bare driver connection where the database has one, by
    default); when it was refused because the consent text changed, the pages stop serving
    the old one at once (they keep study data for a while, see `pages.study_page`)."""
    try:
        return await where(request, run)
    except HTTPException as error:
        if isinstance(error.__cause__, ConsentChanged):
            request.app.state.study_pages.forget(slug)
        raise


def _invite(session: Database, code: str) -> LabInvite:
    """The invitation a code names; an unknown code is refused before anything else. The
    read ends here (invitations never change), so the operation can begin its write."""
    invite = find_invite(session, code)
    session.rollback()
    if invite is None:
        raise ForbiddenError("this invitation code is not valid; check the link you were given")
    return invite


def _person(
    session: Database, body: SubmitRequest | SaveLabelRequest
) -> tuple[WorkerRef, str | None]:
    if body.code is not None:
        return WorkerRef.of_invite(_invite(session, body.code)), None
    assert body.worker_id is not None
    return WorkerRef(WorkerSource.mturk, body.worker_id), body.mturk_assignment_id


# The two requests of every image come first: a router tries its routes in order.
@router.get("/assignments/{public_id}/items/{position}", name="item_image")
async def get_item_image(request: Request, public_id: PublicId, position: Position) -> Response:
    def work(session: Session) -> bytes:
        try:
            return item_image(session=session, assignment_public_id=public_id, position=position)
        except StudyError as error:
            raise HTTPException(error.status, error.reason) from error

    png = request.app.state.item_images.get(public_id, position, _now())
    if png is None:
        png = await in_session(request, work)
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.put(
    "/assignments/{public_id}/labels/{position}",
    name="save_label",
    response_model=SaveLabelResponse,
)
async def put_label(
    request: Request, public_id: PublicId, position: Position, body: SaveLabelRequest
) -> Response:
    """One label as the person gives it, kept until the submission (a reload resumes).

    The page sends one per image: the server's most frequent write. An MTurk worker's label
    (the worker is who the body says; the statement checks the hold) is one statement: on
    PostgreSQL awaited on the event loop, together with the labels saved at the same moment
    (`loop_statements.LoopBatch`), on SQLite on a bare connection in the thread pool; a lab
    code, and a label that statement refuses, take the detailed path, which says why."""
    audited = WorkerRef(WorkerSource.mturk, body.worker_id) if body.worker_id else None
    item = LabelInput(position, body.label, body.response_ms)
    if audited is not None:
        values = draft_values(
            assignment_public_id=public_id,
            worker=audited,
            mturk_assignment_id=body.mturk_assignment_id,
            item=item,
            now=_now(),
        )
        draft_saves = request.app.state.draft_saves
        if draft_saves is not None:
            saved = await draft_saves.run(values)
        else:
            saved = await in_connection(request, lambda connection: save_draft(connection, values))
        if saved:
            return _saved()

    def work(session: Session) -> None:
        worker, mturk_assignment_id = _person(session, body)
        save_label(
            session=session,
            assignment_public_id=public_id,
            worker=worker,
            mturk_assignment_id=mturk_assignment_id,
            item=item,
            now=_now(),
        )

    await in_session(
        request,
        AuditedWork("save_label", audited, {"assignment": public_id, "position": position}, work),
    )
    return _saved()


def _saved() -> Response:
    """`SaveLabelResponse(status="saved")`, without validating and encoding it per request."""
    return Response(SAVED_JSON, media_type="application/json")


@dataclass(frozen=True)
class AcceptWork:
    """One accept, as a value: what the request said and what the server's settings decide,
    so that it may run in a database process (`db/processes.py`)."""

    slug: str
    body: AcceptRequest
    submit_hosts: tuple[str, ...]
    local_mode: bool
    address: str | None
    policy: AllocationPolicy

    def __call__(self, session: Database) -> Accepted:
        invite = None
        mturk = None
        if self.body.mturk is not None and self.body.worker_id is not None:
            worker = WorkerRef(WorkerSource.mturk, self.body.worker_id)
            mturk = MTurkContext(
                assignment_id=self.body.mturk.assignment_id,
                hit_id=self.body.mturk.hit_id,
                turk_submit_to=submit_host_among(self.submit_hosts, self.body.mturk.turk_submit_to),
            )
        else:
            if not self.local_mode:
                raise NotFoundError("the lab mode is off on this server; open the task from MTurk")
            assert self.body.code is not None
            invite = _invite(session, self.body.code)
            worker = WorkerRef.of_invite(invite)
        return accept(
            session=session,
            study_slug=self.slug,
            claimant=Claimant(worker=worker, mturk=mturk, address=self.address),
            consent_sha256=self.body.consent_sha256,
            now=_now(),
            policy=self.policy,
            invite=invite,
        )


@router.post("/studies/{slug}/accept", name="accept", response_model=AcceptResponse)
async def accept_assignment(
    request: Request,
    slug: Slug,
    body: AcceptRequest,
    settings: SettingsDep,
) -> AcceptResponse:
    audited_worker = WorkerRef(WorkerSource.mturk, body.worker_id) if body.worker_id else None
    work = AcceptWork(
        slug=slug,
        body=body,
        submit_hosts=tuple(settings.turk_submit_hosts),
        local_mode=settings.local_mode,
        address=getattr(request.state, "client_address", None),
        policy=AllocationPolicy.from_settings(settings),
    )
    accepted = await accepting(
        request, slug, AuditedWork("accept", audited_worker, {"study": slug}, work)
    )
    return accept_response(request, accepted)


@router.get("/studies/{slug}/consent", name="consent", response_model=ProtocolTextOut)
async def consent_text(request: Request, slug: Slug) -> ProtocolTextOut:
    """The study's current consent text: what a person agrees to, and the SHA-256 the accept
    must carry (the page has both in its HTML; this is for other clients)."""

    def work(session: Session) -> ShownText:
        try:
            study = find_study(session, slug)
            return ShownText.of(require_text(session, study_id=study.id, kind=TextKind.consent))
        except StudyError as error:
            raise HTTPException(error.status, error.reason) from error

    text = text_out(await in_session(request, work))
    assert text is not None
    return text


@router.post("/studies/{slug}/decline", name="decline", response_model=DeclineResponse)
async def decline(request: Request, slug: Slug, body: DeclineRequest) -> DeclineResponse:
    """Someone read the consent text and did not agree: the refusal is noted (which study,
    which text, which kind of page), and nothing else, not even who."""

    def work(session: Session) -> None:
        try:
            study = find_study(session, slug)
            current = require_text(session, study_id=study.id, kind=TextKind.consent)
        except StudyError as error:
            raise HTTPException(error.status, error.reason) from error
        record_event(
            session,
            kind="consent_declined",
            study_id=study.id,
            detail={
                "source": body.source,
                "consent_sha256": body.consent_sha256,
                "current_version": current.version,
                "was_current": body.consent_sha256 == current.sha256,
            },
        )
        session.commit()

    await in_session(request, work)
    return DeclineResponse(status="declined")


def accept_response(
    request: Request,
    accepted: Accepted,
    *,
    submit_route: str = "submit_labels",
    label_route: str = "save_label",
) -> AcceptResponse:
    """The answer to an accept: the items' URLs (their images kept in the app's cache), where
    each label is saved as it is given, and where the labels go (`submit_route`, each
    source's own submit endpoint)."""
    public_id = accepted.assignment_public_id
    request.app.state.item_images.remember(public_id, accepted.item_images, accepted.expires_at)
    # One path, then the positions: ".../items/0" -> ".../items/<n>"
    items_prefix = route_path(request, "item_image", public_id=public_id, position=0)[:-1]
    labels_prefix = route_path(request, label_route, public_id=public_id, position=0)[:-1]
    return AcceptResponse(
        outcome=accepted.outcome.value,
        assignment=public_id,
        num_items=accepted.num_items,
        class_names=accepted.class_names,
        item_urls=[f"{items_prefix}{position}" for position in range(accepted.num_items)],
        label_url_prefix=labels_prefix,
        submit_url=route_path(request, submit_route, public_id=public_id),
        expires_at=accepted.expires_at,
        labels=[
            SavedLabel(position=i.position, label=i.label, response_ms=i.response_ms)
            for i in accepted.saved
        ],
        debrief=text_out(accepted.debrief),
    )


@dataclass(frozen=True)
class SubmitWork:
    """One submission, as a value (it may run in a database process, `db/processes.py`)."""

    public_id: str
    body: SubmitRequest

    def __call__(self, session: Database) -> Submitted:
        worker, mturk_assignment_id = _person(session, self.body)
        return submit(
            session=session,
            assignment_public_id=self.public_id,
            worker=worker,
            mturk_assignment_id=mturk_assignment_id,
            labels=[LabelInput(i.position, i.label, i.response_ms) for i in self.body.labels],
            now=_now(),
        )


@router.post("/assignments/{public_id}/submit", name="submit_labels", response_model=SubmitResponse)
async def submit_labels(
    request: Request, public_id: PublicId, body: SubmitRequest
) -> SubmitResponse:
    audited = WorkerRef(WorkerSource.mturk, body.worker_id) if body.worker_id else None
    result = await in_database(
        request,
        AuditedWork("submit", audited, {"assignment": public_id}, SubmitWork(public_id, body)),
    )
    return submit_response(result)


def submit_response(result: Submitted) -> SubmitResponse:
    return SubmitResponse(
        status="already_submitted" if result.already_submitted else "stored",
        labels=result.num_labels,
        debrief=text_out(result.debrief),
    )
