"""Prolific's way in: the study page with Prolific's URL parameters, and its JSON endpoints.

    GET  /prolific/{slug}?PROLIFIC_PID=..&STUDY_ID=..&SESSION_ID=..   the labeling page
    POST /api/prolific/{slug}/accept                  {participant_id, study_id, session_id,
                                                       consent_sha256}
    POST /api/prolific/assignments/{public_id}/submit  the same ids + labels
    POST /api/prolific/{slug}/complete                the same ids -> {completion_url}

The page is the same labeling page as MTurk's and the lab's (label.js): consent first, told
to send the three ids with every request and, once the labels are stored and the debrief
read, to fetch the completion URL and go there. The rules (formats, the study id, the bound session, the code only after a
stored submission) are in `study_server.prolific_entry`; every refusal is a 4xx with its
reason, written to the audit of events, with nothing else stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from study_server.allocation import AllocationPolicy
from study_server.api.deps import SettingsDep, in_session
from study_server.api.route_paths import route_path
from study_server.api.routes.labeling import (
    AuditedWork,
    Position,
    PublicId,
    accept_response,
    accepting,
    submit_response,
)

# The page helpers are shared with the HIT and lab pages (same template, same study cache).
from study_server.api.routes.pages import label_page, message_page, study_page
from study_server.api.schemas import (
    AcceptResponse,
    CompletionResponse,
    ProlificAcceptRequest,
    ProlificIdsIn,
    ProlificSaveLabelRequest,
    ProlificSubmitRequest,
    SaveLabelResponse,
    SubmitResponse,
)
from study_server.db.store import utc_now
from study_server.errors import StudyError
from study_server.operations import Accepted, LabelInput, Submitted
from study_server.prolific_entry import (
    ProlificIds,
    check_study,
    completion_url,
    enter,
    parse_ids,
    save_participant_label,
    submit_labels,
)
from study_server.slug import Slug

router = APIRouter(include_in_schema=False)

# Prolific's parameter names, as it appends them; 64 characters is plenty for a 24-char id.
ProlificParam = Annotated[str | None, Query(max_length=64)]


def _ids(body: ProlificIdsIn) -> ProlificIds:
    return ProlificIds(body.participant_id.lower(), body.study_id.lower(), body.session_id.lower())


@router.get("/prolific/{slug}", response_class=HTMLResponse, name="prolific_page")
async def prolific_page(
    request: Request,
    slug: Slug,
    PROLIFIC_PID: ProlificParam = None,  # Prolific's parameter names
    STUDY_ID: ProlificParam = None,
    SESSION_ID: ProlificParam = None,
) -> HTMLResponse:
    try:
        study = await study_page(request, slug)
        ids = parse_ids(PROLIFIC_PID, STUDY_ID, SESSION_ID)
        await in_session(request, lambda session: check_study(session, study_slug=slug, ids=ids))
        config = {
            "mode": "prolific",
            "workerId": ids.participant_id,
            "identity": {
                "participant_id": ids.participant_id,
                "study_id": ids.study_id,
                "session_id": ids.session_id,
            },
            "acceptUrl": route_path(request, "prolific_accept", slug=slug),
            "completeUrl": route_path(request, "prolific_complete", slug=slug),
        }
        return label_page(request, study=study, config=config)
    except StudyError as error:
        return message_page(request, error)


@router.post("/api/prolific/{slug}/accept", name="prolific_accept", response_model=AcceptResponse)
async def accept_participant(
    request: Request, slug: Slug, body: ProlificAcceptRequest, settings: SettingsDep
) -> AcceptResponse:
    ids = _ids(body)
    address = getattr(request.state, "client_address", None)

    def work(session: Session) -> Accepted:
        return enter(
            session=session,
            study_slug=slug,
            ids=ids,
            consent_sha256=body.consent_sha256,
            now=utc_now(),
            policy=AllocationPolicy.from_settings(settings),
            address=address,
        )

    detail = {"study": slug, "prolific_session": ids.session_id}
    # A session: the Prolific checks before the accept read ORM objects.
    accepted = await accepting(
        request, slug, AuditedWork("accept", ids.worker, detail, work), where=in_session
    )
    return accept_response(
        request, accepted, submit_route="prolific_submit", label_route="prolific_save_label"
    )


@router.put(
    "/api/prolific/assignments/{public_id}/labels/{position}",
    name="prolific_save_label",
    response_model=SaveLabelResponse,
)
async def save_participant_label_route(
    request: Request, public_id: PublicId, position: Position, body: ProlificSaveLabelRequest
) -> SaveLabelResponse:
    """One label as the participant gives it, kept until the submission (a reload resumes)."""
    ids = _ids(body)

    def work(session: Session) -> None:
        save_participant_label(
            session=session,
            assignment_public_id=public_id,
            ids=ids,
            item=LabelInput(position, body.label, body.response_ms),
            now=utc_now(),
        )

    detail = {"assignment": public_id, "position": position, "prolific_session": ids.session_id}
    await in_session(request, AuditedWork("save_label", ids.worker, detail, work))
    return SaveLabelResponse(status="saved")


@router.post(
    "/api/prolific/assignments/{public_id}/submit",
    name="prolific_submit",
    response_model=SubmitResponse,
)
async def submit_participant_labels(
    request: Request, public_id: PublicId, body: ProlificSubmitRequest
) -> SubmitResponse:
    ids = _ids(body)
    labels = [LabelInput(item.position, item.label, item.response_ms) for item in body.labels]

    def work(session: Session) -> Submitted:
        return submit_labels(
            session=session, assignment_public_id=public_id, ids=ids, labels=labels, now=utc_now()
        )

    detail = {"assignment": public_id, "prolific_session": ids.session_id}
    result = await in_session(request, AuditedWork("submit", ids.worker, detail, work))
    return submit_response(result)


@router.post(
    "/api/prolific/{slug}/complete", name="prolific_complete", response_model=CompletionResponse
)
async def complete(
    request: Request, slug: Slug, body: ProlificIdsIn, settings: SettingsDep
) -> CompletionResponse:
    ids = _ids(body)

    def work(session: Session) -> str:
        return completion_url(
            session=session,
            study_slug=slug,
            ids=ids,
            base_url=settings.prolific.completion_url,
        )

    detail = {"study": slug, "prolific_session": ids.session_id}
    url = await in_session(request, AuditedWork("complete", ids.worker, detail, work))
    return CompletionResponse(completion_url=url)
