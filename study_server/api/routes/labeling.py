"""The labeling JSON API the HIT page talks to: accept, item images, submit.

Refusals (unknown study or HIT, a worker acting on someone else's assignment, a second
submission with other labels...) answer their 4xx with a reason and are written to the
audit of events; nothing else is stored by a refused request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Request, Response
from sqlalchemy.orm import Session

from study_server.api.deps import SettingsDep, in_session
from study_server.api.schemas import (
    MAX_ITEMS,
    AcceptRequest,
    AcceptResponse,
    SubmitRequest,
    SubmitResponse,
)
from study_server.db.models import WorkerSource
from study_server.db.store import record_event
from study_server.errors import NotFoundError, StudyError
from study_server.links import normalized_submit_host
from study_server.operations import (
    Accepted,
    LabelInput,
    MTurkContext,
    Submitted,
    WorkerRef,
    accept,
    item_image,
    submit,
)
from study_server.slug import Slug

router = APIRouter(prefix="/api", tags=["labeling"])

PublicId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def audited(
    action: str, worker: WorkerRef | None, detail: dict[str, Any], work: Callable[[Session], T]
) -> Callable[[Session], T]:
    """`work`, with a refusal noted in the audit of events before it becomes its HTTP error."""

    def run(session: Session) -> T:
        try:
            return work(session)
        except StudyError as error:
            session.rollback()
            record_event(
                session,
                kind="refused",
                worker=worker.external_id if worker else None,
                detail={"action": action, "status": error.status, "reason": error.reason, **detail},
            )
            session.commit()
            raise HTTPException(error.status, error.reason) from error

    return run


@router.post("/studies/{slug}/accept", name="accept", response_model=AcceptResponse)
async def accept_assignment(
    request: Request,
    slug: Slug,
    body: AcceptRequest,
    settings: SettingsDep,
) -> AcceptResponse:
    source = WorkerSource.mturk if body.mturk else WorkerSource.local
    worker = WorkerRef(source=source, external_id=body.worker_id)

    def work(session: Session) -> Accepted:
        mturk = None
        if body.mturk is not None:
            mturk = MTurkContext(
                assignment_id=body.mturk.assignment_id,
                hit_id=body.mturk.hit_id,
                turk_submit_to=normalized_submit_host(settings, body.mturk.turk_submit_to),
            )
        elif not settings.local_mode:
            raise NotFoundError("the lab mode is off on this server; open the task from MTurk")
        return accept(
            session=session,
            study_slug=slug,
            worker=worker,
            mturk=mturk,
            now=_now(),
            timeout=timedelta(seconds=settings.allocation_timeout_s),
        )

    accepted = await in_session(request, audited("accept", worker, {"study": slug}, work))
    return accept_response(request, accepted, submit_route="submit_labels")


def accept_response(request: Request, accepted: Accepted, *, submit_route: str) -> AcceptResponse:
    """The answer to an accept: the items' URLs (their images kept in the app's cache) and
    where the labels go (`submit_route`, each source's own submit endpoint)."""
    public_id = accepted.assignment_public_id
    request.app.state.item_images.remember(public_id, accepted.item_images, accepted.expires_at)
    # url_for once (it is slow), then the positions: ".../items/0" -> ".../items/<n>"
    items_prefix = request.url_for("item_image", public_id=public_id, position="0").path[:-1]
    return AcceptResponse(
        outcome=accepted.outcome.value,
        assignment=public_id,
        num_items=accepted.num_items,
        class_names=accepted.class_names,
        item_urls=[f"{items_prefix}{position}" for position in range(accepted.num_items)],
        submit_url=request.url_for(submit_route, public_id=public_id).path,
        expires_at=accepted.expires_at,
    )


@router.get("/assignments/{public_id}/items/{position}", name="item_image")
async def get_item_image(
    request: Request, public_id: PublicId, position: Annotated[int, Path(ge=0, lt=MAX_ITEMS)]
) -> Response:
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


@router.post("/assignments/{public_id}/submit", name="submit_labels", response_model=SubmitResponse)
async def submit_labels(
    request: Request, public_id: PublicId, body: SubmitRequest
) -> SubmitResponse:
    source = WorkerSource.mturk if body.mturk_assignment_id else WorkerSource.local
    worker = WorkerRef(source=source, external_id=body.worker_id)
    labels = [LabelInput(item.position, item.label, item.response_ms) for item in body.labels]

    def work(session: Session) -> Submitted:
        return submit(
            session=session,
            assignment_public_id=public_id,
            worker=worker,
            mturk_assignment_id=body.mturk_assignment_id,
            labels=labels,
            now=_now(),
        )

    result = await in_session(request, audited("submit", worker, {"assignment": public_id}, work))
    return SubmitResponse(
        status="already_submitted" if result.already_submitted else "stored",
        labels=result.num_labels,
    )
