"""The fake's HTTP face: the part of Prolific's REST API the `prolific` command uses, and the
participants' side of Prolific.

Researcher API (``Authorization: Token <token>``; error answers as
``{"error": {"status", "title", "detail"}}``, 401 as ``{"detail": "Invalid token."}``; lists
as ``{"results", "_links": {"next": {"href"}}, "meta": {"count"}}``, paged by ``page`` /
``page_size``):

    GET  /api/v1/workspaces/{id}/balance/          POST /api/v1/study-cost-calculator/
    GET  /api/v1/studies/  (and /api/v1/projects/{id}/studies/)     POST /api/v1/studies/
    GET  /api/v1/studies/{id}/                     POST /api/v1/studies/{id}/transition/
    GET  /api/v1/studies/{id}/submissions/         POST /api/v1/submissions/{id}/transition/
    POST /api/v1/submissions/bulk-approve/         POST /api/v1/submissions/bonus-payments/
    POST /api/v1/bulk-bonus-payments/{id}/pay/
    GET  /api/v1/participant-groups/?workspace_id= POST /api/v1/participant-groups/
    GET|POST /api/v1/participant-groups/{id}/participants/

Participants (what their clicks on Prolific do; the cookie ``prolific_participant`` stands
for their login):

    POST /_participant/start {study_id, participant_id} -> {session_id, url}   (sets the cookie)
    GET  /_participant/take?study=..&participant=..      the same, redirecting to the study
    GET  /submissions/complete?cc=CODE                   Prolific's completion URL
    POST /_participant/return {session_id}
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from fastapi import Body, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from markets.prolific.fake.state import FakeError, FakeProlific

API = "/api/v1"
PARTICIPANT_COOKIE = "prolific_participant"
MAX_PAGE_SIZE = 200


def create_app(fake: FakeProlific) -> FastAPI:
    app = FastAPI(title="fake Prolific", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(FakeError)
    async def fake_error(_request: Request, error: FakeError) -> JSONResponse:
        if error.status == 401:
            return JSONResponse({"detail": error.detail}, status_code=401)
        body = {"status": error.status, "title": error.title, "detail": error.detail}
        return JSONResponse({"error": body}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        detail = {".".join(str(p) for p in e["loc"][1:]): [e["msg"]] for e in error.errors()}
        return JSONResponse(
            {"error": {"status": 400, "title": "Bad Request", "detail": detail}}, status_code=400
        )

    def api(
        operation: str, authorization: str | None, work: Callable[[], Any], status: int = 200
    ) -> Response:
        """One researcher API call: the token, an injected fault, the work, a lost answer."""
        fake.calls.append(operation)
        fake.check_token(authorization)
        fault = fake.take_fault()
        if fault is not None:
            code, retry_after = fault
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            body = {"status": code, "title": "Injected fault", "detail": f"fake {code}"}
            return JSONResponse({"error": body}, status_code=code, headers=headers)
        result = work()
        if fake.answer_lost(operation):
            body = {"status": 503, "title": "Service Unavailable", "detail": "lost answer"}
            return JSONResponse({"error": body}, status_code=503)
        if result is None:
            return Response(status_code=204 if status == 200 else status)
        return JSONResponse(result, status_code=status)

    def paged(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            page = max(1, int(request.query_params.get("page", 1)))
            size = int(request.query_params.get("page_size", fake.page_size))
        except ValueError as error:
            raise FakeError(400, "page and page_size are integers.") from error
        size = min(max(1, size), MAX_PAGE_SIZE)
        start = (page - 1) * size
        following = None
        if start + size < len(items):
            following = str(request.url.include_query_params(page=page + 1, page_size=size))
        return {
            "results": items[start : start + size],
            "_links": {"self": {"href": str(request.url)}, "next": {"href": following}},
            "meta": {"count": len(items)},
        }

    Auth = Header(default=None, alias="Authorization")
    Json = Body(default_factory=dict)

    @app.get(f"{API}/workspaces/{{workspace_id}}/balance/")
    def balance(workspace_id: str, authorization: str | None = Auth) -> Response:
        return api("balance", authorization, lambda: fake.balance(workspace_id))

    @app.post(f"{API}/study-cost-calculator/")
    def quote(body: dict[str, Any] = Json, authorization: str | None = Auth) -> Response:
        return api("quote", authorization, lambda: fake.quote(body))

    @app.get(f"{API}/studies/")
    def studies(request: Request, authorization: str | None = Auth) -> Response:
        return api("list_studies", authorization, lambda: paged(request, fake.list_studies()))

    @app.get(f"{API}/projects/{{project_id}}/studies/")
    def project_studies(
        request: Request, project_id: str, authorization: str | None = Auth
    ) -> Response:
        return api(
            "list_studies", authorization, lambda: paged(request, fake.list_studies(project_id))
        )

    @app.post(f"{API}/studies/")
    def create_study(body: dict[str, Any] = Json, authorization: str | None = Auth) -> Response:
        return api("create_study", authorization, lambda: fake.create_study(body), status=201)

    @app.get(f"{API}/studies/{{study_id}}/")
    def get_study(study_id: str, authorization: str | None = Auth) -> Response:
        return api("get_study", authorization, lambda: fake.get_study(study_id))

    @app.post(f"{API}/studies/{{study_id}}/transition/")
    def transition_study(
        study_id: str, body: dict[str, Any] = Json, authorization: str | None = Auth
    ) -> Response:
        return api("transition_study", authorization, lambda: fake.transition_study(study_id, body))

    @app.get(f"{API}/studies/{{study_id}}/submissions/")
    def submissions(request: Request, study_id: str, authorization: str | None = Auth) -> Response:
        return api(
            "list_submissions",
            authorization,
            lambda: paged(request, fake.list_submissions(study_id)),
        )

    @app.post(f"{API}/submissions/bulk-approve/")
    def bulk_approve(body: dict[str, Any] = Json, authorization: str | None = Auth) -> Response:
        return api("bulk_approve", authorization, lambda: fake.bulk_approve(body), status=202)

    @app.post(f"{API}/submissions/bonus-payments/")
    def create_bonuses(body: dict[str, Any] = Json, authorization: str | None = Auth) -> Response:
        return api("create_bonuses", authorization, lambda: fake.create_bonuses(body), status=201)

    @app.post(f"{API}/submissions/{{submission_id}}/transition/")
    def transition_submission(
        submission_id: str, body: dict[str, Any] = Json, authorization: str | None = Auth
    ) -> Response:
        return api(
            "transition_submission",
            authorization,
            lambda: fake.transition_submission(submission_id, body),
        )

    @app.post(f"{API}/bulk-bonus-payments/{{bulk_id}}/pay/")
    def pay_bonuses(bulk_id: str, authorization: str | None = Auth) -> Response:
        return api("pay_bonuses", authorization, lambda: fake.pay_bonuses(bulk_id), status=202)

    @app.get(f"{API}/participant-groups/")
    def groups(
        request: Request, workspace_id: str | None = None, authorization: str | None = Auth
    ) -> Response:
        return api(
            "list_groups", authorization, lambda: paged(request, fake.list_groups(workspace_id))
        )

    @app.post(f"{API}/participant-groups/")
    def create_group(body: dict[str, Any] = Json, authorization: str | None = Auth) -> Response:
        return api("create_group", authorization, lambda: fake.create_group(body), status=201)

    @app.get(f"{API}/participant-groups/{{group_id}}/participants/")
    def group_members(
        request: Request, group_id: str, authorization: str | None = Auth
    ) -> Response:
        return api(
            "group_members",
            authorization,
            lambda: paged(request, fake.group_participants(group_id)),
        )

    @app.post(f"{API}/participant-groups/{{group_id}}/participants/")
    def add_members(
        group_id: str, body: dict[str, Any] = Json, authorization: str | None = Auth
    ) -> Response:
        return api(
            "add_to_group", authorization, lambda: {"results": fake.add_to_group(group_id, body)}
        )

    # -- the participants' side ----------------------------------------------------------

    @app.post("/_participant/start")
    def start(body: dict[str, Any] = Json) -> Response:
        participant = str(body.get("participant_id", ""))
        session_id, url = fake.start(str(body.get("study_id", "")), participant)
        response = JSONResponse({"session_id": session_id, "url": url})
        response.set_cookie(PARTICIPANT_COOKIE, participant)
        return response

    @app.get("/_participant/take")
    def take(study: str, participant: str) -> Response:
        _, url = fake.start(study, participant)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(PARTICIPANT_COOKIE, participant)
        return response

    @app.get("/submissions/complete", response_class=HTMLResponse)
    def complete(request: Request, cc: str = "") -> HTMLResponse:
        participant = request.cookies.get(PARTICIPANT_COOKIE, "")
        try:
            submission_id = fake.complete(participant, cc)
        except FakeError as error:
            page = f"<!doctype html><title>Not completed</title><p>{escape(str(error.detail))}</p>"
            return HTMLResponse(page, status_code=error.status)
        page = (
            "<!doctype html><title>Submission complete</title>"
            f"<p>Submission {submission_id} is awaiting review.</p>"
        )
        return HTMLResponse(page)

    @app.post("/_participant/return")
    def give_back(body: dict[str, Any] = Json) -> Response:
        fake.return_submission(str(body.get("session_id", "")))
        return JSONResponse({})

    return app
