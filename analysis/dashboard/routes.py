"""The dashboard's pages (`/dashboard/...`), behind the admin token (analysis/dashboard/session.py).

    GET  /dashboard/login, POST /dashboard/login, POST /dashboard/logout
    GET  /dashboard                        every study, with a form to show several together
    GET  /dashboard/studies/{slug}         one study's page
    GET  /dashboard/studies?study=a&study=b    several studies as one page
    GET  /dashboard/panels?study=...       the panels alone (what the page fetches to refresh)
    GET  /dashboard/psychometric.png?study=...  the rho figure of analysis/plot.py

Pages are rendered on the server; dashboard.js only re-fetches the panels every
`REFRESH_S` seconds and swaps them in (no inline script: the server's CSP holds here too).
Bad input is a 4xx with the reason: an unknown study 404, a malformed or missing slug 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from analysis.dashboard.chart import progress_chart, series
from analysis.dashboard.progress import (
    VERIFICATION_ORDER,
    Selection,
    StudyRow,
    all_slugs,
    course,
    fingerprint,
    refusals,
    study_rows,
)
from analysis.dashboard.results import ResultCache, Results, compute_results
from analysis.dashboard.session import LoginThrottle, Sessions
from study_server.db.models import Event
from study_server.db.store import record_event, utc_now
from study_server.errors import StudyError
from study_server.slug import Slug

REFRESH_S = 15
ANNOTATORS_SHOWN = 15  # the rest of the catch table is folded away (<details>)
TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)
templates.env.auto_reload = False
router = APIRouter(prefix="/dashboard", include_in_schema=False)
# The page to return to after signing in: a dashboard path, never another site.
_NEXT = re.compile(r"^/dashboard(?:/[A-Za-z0-9_.\-/]*)?(?:\?[A-Za-z0-9_.\-=&%+]*)?$")
_HEADERS = {
    "Cache-Control": "no-store",
    # On top of the server's CSP: the dashboard is never framed, not even by MTurk.
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Robots-Tag": "noindex",
}
VERIFICATION_TITLES = {
    "confirmed": "Confirmed",
    "invited": "Invited (lab)",
    "unverified": "Awaiting sync",
    "flagged": "Flagged",
    "failed_attention": "Failed attention",
    "not_applicable": "Lab, no invitation",
}


@dataclass
class Dashboard:
    """What the dashboard keeps per app: sessions, the sign-in throttle, the results cache."""

    sessions: Sessions
    throttle: LoginThrottle
    cache: ResultCache


def state(request: Request) -> Dashboard:
    return request.app.state.dashboard


def _page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(_HEADERS)
    return response


def _message(request: Request, title: str, message: str, status_code: int) -> HTMLResponse:
    return _page(request, "message.html", {"title": title, "message": message}, status_code)


def _off(request: Request) -> HTMLResponse:
    return _message(
        request,
        "Dashboard off",
        "The admin dashboard is off: set ADVCRITIC_ADMIN_TOKEN on the server.",
        503,
    )


class NotSignedIn(Exception):
    def __init__(self, page: bool) -> None:
        self.page = page


def _signed_in(request: Request, *, page: bool) -> None:
    dashboard = state(request)
    if not dashboard.sessions.enabled or not dashboard.sessions.valid(
        dashboard.sessions.read(request)
    ):
        raise NotSignedIn(page)


def signed_in_page(request: Request) -> None:
    _signed_in(request, page=True)


def signed_in_fetch(request: Request) -> None:
    _signed_in(request, page=False)


async def not_signed_in(request: Request, error: NotSignedIn) -> Response:
    """Pages send the browser to the sign-in form (and back); fetches get 401."""
    if not state(request).sessions.enabled:
        return _off(request)
    if error.page:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"/dashboard/login?next={quote(target, safe='')}", 303, headers=_HEADERS
        )
    return Response(
        "signed out: sign in again at /dashboard/login",
        401,
        headers=_HEADERS,
        media_type="text/plain",
    )


PageDep = Depends(signed_in_page)
FetchDep = Depends(signed_in_fetch)
StudyQuery = Annotated[list[str] | None, Query(alias="study")]


def _next(target: str | None) -> str:
    return target if target and _NEXT.match(target) and "//" not in target else "/dashboard"


# Signing in and out.


@router.get("/login")
def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=512)] = None
) -> Response:
    dashboard = state(request)
    if not dashboard.sessions.enabled:
        return _off(request)
    if dashboard.sessions.valid(dashboard.sessions.read(request)):
        return RedirectResponse(_next(next), 303, headers=_HEADERS)
    return _page(request, "login.html", {"title": "Sign in", "next": _next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)] = "",
    next: Annotated[str, Form(max_length=512)] = "/dashboard",
) -> Response:
    dashboard = state(request)
    context = {"title": "Sign in", "next": _next(next)}
    if not dashboard.sessions.enabled:
        return _off(request)
    gate = request.app.state.clients
    if gate.untrusted_proxy(request.scope):
        return _message(
            request,
            "Server misconfigured",
            "this server is behind a proxy it does not trust: set ADVCRITIC_TRUSTED_PROXIES "
            "to the proxy's address (docs/deployment.md)",
            503,
        )
    address, wait = dashboard.throttle.wait(request)
    if wait:
        if address is not None and gate.first_refusal(address, "dashboard_login"):
            _audit(request, "rate_limited", {"bucket": "dashboard_login", "retry_after": wait})
        response = _page(
            request,
            "login.html",
            {
                **context,
                "error": f"Too many sign-in attempts from your network; try again in {wait} s.",
            },
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if not dashboard.sessions.token_matches(token):
        _audit(request, "admin_login_refused", {"reason": "wrong admin token"})
        return _page(
            request,
            "login.html",
            {**context, "error": "That is not the admin token (ADVCRITIC_ADMIN_TOKEN)."},
            401,
        )
    response = RedirectResponse(context["next"], 303, headers=_HEADERS)
    dashboard.sessions.set_cookie(request, response)
    return response


def _audit(request: Request, kind: str, detail: dict[str, Any]) -> None:
    """An audit row for a refused sign-in (never what was typed, never the address)."""
    with request.app.state.session_factory() as session:
        record_event(session, kind=kind, detail=detail)
        session.commit()


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    dashboard = state(request)
    dashboard.sessions.void(dashboard.sessions.read(request))
    response = RedirectResponse("/dashboard/login", 303, headers=_HEADERS)
    dashboard.sessions.clear_cookie(request, response)
    return response


# The pages.


@router.get("", dependencies=[PageDep])
def index(request: Request) -> HTMLResponse:
    with request.app.state.session_factory() as session:
        rows = study_rows(session, all_slugs(session))
        since = utc_now() - timedelta(hours=24)
        refused_logins = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.kind == "admin_login_refused", Event.created_at >= since)
        )
    return _page(
        request,
        "index.html",
        {"title": "Studies", "rows": rows, "refused_logins": refused_logins or 0},
    )


@router.get("/studies", dependencies=[PageDep])
def studies_page(request: Request, study: StudyQuery = None) -> HTMLResponse:
    return _studies(request, study or [], None)


@router.get("/studies/{slug}", dependencies=[PageDep])
def study_page(request: Request, slug: Slug) -> HTMLResponse:
    return _studies(request, [slug], slug)


def _studies(request: Request, slugs: list[str], title: str | None) -> HTMLResponse:
    try:
        selection = Selection.of(slugs, title)
        panels = _panels(request, selection)
    except StudyError as error:
        return _message(request, "Cannot show these studies", error.reason, error.status)
    return _page(
        request,
        "studies.html",
        {"title": selection.title, "selection": selection, "refresh_s": REFRESH_S, **panels},
    )


@router.get("/panels", dependencies=[FetchDep])
def panels(request: Request, study: StudyQuery = None) -> HTMLResponse:
    try:
        selection = Selection.of(study or [])
        context = _panels(request, selection)
    except StudyError as error:
        raise HTTPException(error.status, error.reason) from error
    return _page(request, "_panels.html", {"selection": selection, **context})


@router.get("/psychometric.png", dependencies=[FetchDep])
def psychometric(request: Request, study: StudyQuery = None) -> Response:
    try:
        results, _ = _results(request, Selection.of(study or []))
    except StudyError as error:
        raise HTTPException(error.status, error.reason) from error
    if results.psychometric_png is None:
        raise HTTPException(404, "no psychometric figure for these studies yet (no counted labels)")
    return Response(results.psychometric_png, media_type="image/png", headers=_HEADERS)


def _results(request: Request, selection: Selection) -> tuple[Results, list[StudyRow]]:
    factory = request.app.state.session_factory
    with factory() as session:
        rows = study_rows(session, selection.slugs)
    key, now = tuple(sorted(selection.slugs)), fingerprint(rows)
    results = state(request).cache.get(
        key, now, lambda: compute_results(factory, selection.slugs, now)
    )
    return results, rows


def _panels(request: Request, selection: Selection) -> dict[str, Any]:
    """Everything the panels show: the cheap queries now, the analysis from the cache."""
    results, rows = _results(request, selection)
    with request.app.state.session_factory() as session:
        moments = course(session, selection.slugs)
        latest = refusals(session, selection.slugs)
    states = set().union(*(row.submissions for row in rows)) if rows else set()
    columns = [s for s in VERIFICATION_ORDER if s in states] + sorted(
        states - set(VERIFICATION_ORDER)
    )
    goal = sum(row.total for row in rows)
    cache = state(request).cache
    return {
        "rows": rows,
        "columns": [
            (name, VERIFICATION_TITLES.get(name, name.replace("_", " "))) for name in columns
        ],
        "totals": _totals(rows, columns),
        "chart": progress_chart(moments, goal=goal),
        "legend": series(moments) if moments else [],
        "goal": goal,
        "results": results,
        "current": results.fingerprint == fingerprint(rows),
        "next_recompute": results.computed_at + timedelta(seconds=cache.ttl_s),
        "image_version": int(results.computed_at.timestamp() * 1000),
        "refusals": latest,
        "annotators_shown": ANNOTATORS_SHOWN,
        "now": datetime.now(UTC),
    }


def _totals(rows: list[StudyRow], columns: list[str]) -> dict[str, int]:
    return {
        "total": sum(r.total for r in rows),
        **{
            name: sum(r.progress.assignments.get(name, 0) for r in rows)
            for name in ("available", "allocated", "submitted")
        },
        **{f"v:{name}": sum(r.submissions.get(name, 0) for r in rows) for name in columns},
        "labels": sum(r.progress.labels for r in rows),
        "workers": sum(r.progress.workers for r in rows),
    }
