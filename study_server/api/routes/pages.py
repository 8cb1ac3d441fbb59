"""The HTML pages: MTurk's HIT page (ExternalQuestion) and the lab link.

`/hit/{slug}` is what an ExternalQuestion points at; `/lab/{slug}?code=...` is the lab link of
an invitation (study_server/invitations.py). MTurk appends `assignmentId`, `hitId`,
`workerId` and `turkSubmitTo`; in preview the assignmentId is `ASSIGNMENT_ID_NOT_AVAILABLE`
and the page shows the consent text (workers decide before accepting), the instructions and
an example that is not a study image. After accept the page is the labeling app: the
consent text first, with "I agree" and "I do not agree"; agreeing allocates through the JSON
API, with the text's SHA-256; once the server has stored the labels the page shows the
debrief, then posts to `{turkSubmitTo}/mturk/externalSubmit`.

Every parameter is checked against MTurk's id alphabet (400 otherwise) and rendered only
through Jinja's autoescape or `tojson`; the page carries no stimulus ids or labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.api.deps import SettingsDep, in_session
from study_server.api.route_paths import route_path, template_route_path
from study_server.api.schemas import ID_PATTERN
from study_server.api.timed_reads import TimedReads
from study_server.db.models import Stimulus, StimulusKind, Study, TextKind
from study_server.db.store import find_study, record_event
from study_server.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    StudyError,
)
from study_server.invitations import CODE_PATTERN, find_invite, is_spent
from study_server.links import normalized_submit_host
from study_server.operations import assignment_size_range
from study_server.protocol_texts import ShownText, require_text
from study_server.slug import Slug, is_slug

PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
# The code form's `pattern`: browsers compile it with the `v` flag, where a bare "-" in a
# class is a syntax error (the browser then skips the check); escaped, it is valid.
LAB_CODE_HTML_PATTERN = r"[A-Za-z0-9 \-]{4,64}"
FAVICON = Path(__file__).resolve().parents[2] / "static" / "favicon.ico"
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "templates")
# The templates ship with the package: no stat() of the template file on every render.
templates.env.auto_reload = False
templates.env.globals["route_path"] = template_route_path
router = APIRouter(include_in_schema=False)


def compile_templates() -> None:
    """Compile every page's template now, not at its first request (10 ms in all), which
    the pages asked for at the same moment by a study's first people would wait for."""
    for name in templates.env.list_templates():
        templates.env.get_template(name)


QueryText = Annotated[str | None, Query(max_length=512)]
# How long the pages keep a study's data before reading it again: a study's images never
# change, but a new consent text may be attached to a running study at any time.
STUDY_PAGE_TTL_S = 15.0


def message_page(request: Request, error: StudyError) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "message.html",
        {"title": "Cannot open this task", "message": error.reason},
        status_code=error.status,
    )


def _check_id(name: str, value: str | None) -> str:
    if value is None or not re.fullmatch(ID_PATTERN, value):
        raise InvalidInputError(
            f"{name} is missing or malformed (letters, digits, '_' and '-', at most 128)"
        )
    return value


@dataclass(frozen=True)
class StudyPage:
    """What the pages show of a study, read in one thread hop (see `in_session`)."""

    slug: str
    class_names: tuple[str, ...]
    fewest_items: int
    most_items: int
    consent: ShownText
    # Whether the study has catch trials: the instructions then say that some images check
    # attention (a market lets a requester act on a check only if it was stated).
    catch_trials: bool = False

    @property
    def consent_html(self) -> Markup:
        """Safe to put in the page as it is: sanitized when the version was made."""
        return Markup(self.consent.html)

    @property
    def items_text(self) -> str:
        """How many images a person labels, for the instructions: "25", or "26-27"."""
        if self.fewest_items == self.most_items:
            return str(self.most_items)
        return f"{self.fewest_items}\u2013{self.most_items}"


async def study_page(request: Request, slug: str) -> StudyPage:
    """The study's page data; read from the database at most every `STUDY_PAGE_TTL_S`.

    A study's images never change after import, and its consent text rarely does, so the
    pages keep what they read in `app.state.study_pages` and answer without a thread hop or
    a query: bench/server.py measured the hop at hundreds of ms under load, as the page
    requests queued for the GIL behind accepts and submits. A consent text attached meanwhile
    is shown after the TTL, or at once after an accept refused the old one
    (`labeling.accepting`). Only studies that exist are kept, so an unknown slug always asks
    the database (a study imported later is found); requests that come while a read is in
    flight share it (`timed_reads`).
    """
    if not is_slug(slug):
        raise NotFoundError("no such study")

    def read(session: Session) -> StudyPage:
        study = find_study(session, slug)
        fewest, most = assignment_size_range(session, study.id)
        consent = ShownText.of(require_text(session, study_id=study.id, kind=TextKind.consent))
        catch = session.scalar(
            select(Stimulus.id)
            .where(Stimulus.study_id == study.id, Stimulus.kind == StimulusKind.catch)
            .limit(1)
        )
        return StudyPage(
            study.slug,
            tuple(study.class_names),
            fewest,
            most,
            consent,
            catch_trials=catch is not None,
        )

    pages: TimedReads[StudyPage] = request.app.state.study_pages
    return await pages.get(slug, lambda: in_session(request, read))


def _noun(class_names: Sequence[str]) -> str:
    return "digit" if all(name.isdigit() for name in class_names) else "class"


def label_page(request: Request, *, study: StudyPage, config: dict[str, Any]) -> HTMLResponse:
    context = {
        "title": "Label images",
        "noun": _noun(study.class_names),
        "num_items": study.most_items,
        "items_text": study.items_text,
        "catch_trials": study.catch_trials,
        "consent_html": study.consent_html,
        "config": {
            "acceptUrl": route_path(request, "accept", slug=study.slug),
            "declineUrl": route_path(request, "decline", slug=study.slug),
            **config,  # a source may name its own endpoints (Prolific does)
            "classNames": list(study.class_names),
            "consentSha256": study.consent.sha256,
        },
    }
    return templates.TemplateResponse(request, "label.html", context)


@router.get("/hit/{slug}", response_class=HTMLResponse)
async def hit_page(
    request: Request,
    slug: Slug,
    settings: SettingsDep,
    assignmentId: QueryText = None,
    hitId: QueryText = None,
    workerId: QueryText = None,
    turkSubmitTo: QueryText = None,
) -> HTMLResponse:
    try:
        study = await study_page(request, slug)
        if assignmentId == PREVIEW_ASSIGNMENT_ID:
            return templates.TemplateResponse(
                request,
                "preview.html",
                {
                    "title": "Label images (preview)",
                    "noun": _noun(study.class_names),
                    "items_text": study.items_text,
                    "class_names": list(study.class_names),
                    "catch_trials": study.catch_trials,
                    "consent_html": study.consent_html,
                },
            )
        config = {
            "mode": "mturk",
            "assignmentId": _check_id("assignmentId", assignmentId),
            "hitId": _check_id("hitId", hitId),
            "workerId": _check_id("workerId", workerId),
            "turkSubmitTo": normalized_submit_host(settings, turkSubmitTo),
        }
        return label_page(request, study=study, config=config)
    except StudyError as error:
        return message_page(request, error)


@router.get("/lab/{slug}", response_class=HTMLResponse)
async def lab_start(
    request: Request, slug: Slug, settings: SettingsDep, code: QueryText = None
) -> HTMLResponse:
    """The lab link: `/lab/<study>?code=<invitation code>` opens the labeling page; without a
    code, a form to type the one on a printed invitation. Any other code is refused."""
    try:
        if not settings.local_mode:
            raise NotFoundError("the lab mode is off on this server")
        study = await study_page(request, slug)
        if code is None:
            return templates.TemplateResponse(
                request,
                "lab_start.html",
                {
                    "title": "Label images",
                    "slug": study.slug,
                    "noun": _noun(study.class_names),
                    "items_text": study.items_text,
                    "catch_trials": study.catch_trials,
                    "pattern": LAB_CODE_HTML_PATTERN,
                },
            )
        if not re.fullmatch(CODE_PATTERN, code):
            raise InvalidInputError("this is not an invitation code (letters, digits and '-')")
        await in_session(request, lambda session: _check_invitation(session, study, code))
        return label_page(request, study=study, config={"mode": "local", "code": code})
    except StudyError as error:
        return message_page(request, error)


def _check_invitation(session: Session, study: StudyPage, code: str) -> None:
    """Refuse an unknown or spent code (with an audit row), or return having stored nothing."""
    invite = find_invite(session, code)
    problem: StudyError | None = None
    study_id, experiment_id = session.execute(
        select(Study.id, Study.experiment_id).where(Study.slug == study.slug)
    ).one()
    if invite is None or not invite.opens(study_id, experiment_id):
        problem = ForbiddenError(
            "this invitation code is not valid for this study; check the link you were given"
        )
    elif is_spent(session, invite):
        problem = ConflictError(
            "this invitation code has already been used to complete the study; thank you"
        )
    if problem is not None:
        record_event(
            session,
            kind="refused",
            study_id=study_id,
            worker=invite.worker_id if invite else None,
            detail={"action": "lab_page", "status": problem.status, "reason": problem.reason},
        )
        session.commit()
        raise problem


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(
        FAVICON, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
    )
