"""The HTML pages: MTurk's HIT page (ExternalQuestion) and the lab link.

`/hit/{slug}` is what an ExternalQuestion points at. MTurk appends `assignmentId`, `hitId`,
`workerId` and `turkSubmitTo`; in preview the assignmentId is `ASSIGNMENT_ID_NOT_AVAILABLE`
and the page shows only instructions and an example that is not a study image. After
accept the page is the labeling app; it allocates through the JSON API and, once the
server has stored the labels, posts to `{turkSubmitTo}/mturk/externalSubmit`.

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
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from study_server.api.deps import SettingsDep, in_session
from study_server.api.schemas import ID_PATTERN
from study_server.db.store import find_study
from study_server.errors import InvalidInputError, NotFoundError, StudyError
from study_server.links import normalized_submit_host
from study_server.operations import assignment_size_range
from study_server.slug import Slug, is_slug

PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "templates")
# The templates ship with the package: no stat() of the template file on every render.
templates.env.auto_reload = False
router = APIRouter(include_in_schema=False)

QueryText = Annotated[str | None, Query(max_length=512)]


def _message(request: Request, error: StudyError) -> HTMLResponse:
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

    @property
    def items_text(self) -> str:
        """How many images a person labels, for the instructions: "25", or "26-27"."""
        if self.fewest_items == self.most_items:
            return str(self.most_items)
        return f"{self.fewest_items}\u2013{self.most_items}"


async def _study(request: Request, slug: str) -> StudyPage:
    """The study's page data; read from the database once per study and app.

    A study never changes after import (nothing updates or deletes one), so the pages keep
    what they read in `app.state.study_pages` and answer without a thread hop or a query:
    bench/server.py measured the hop at hundreds of ms under load, as the page requests
    queued for the GIL behind accepts and submits. Only studies that exist are kept, so an
    unknown slug always asks the database (a study imported later is found).
    """
    if not is_slug(slug):
        raise NotFoundError("no such study")
    cache: dict[str, StudyPage] = request.app.state.study_pages
    if (page := cache.get(slug)) is not None:
        return page

    def read(session: Session) -> StudyPage:
        study = find_study(session, slug)
        fewest, most = assignment_size_range(session, study.id)
        return StudyPage(study.slug, tuple(study.class_names), fewest, most)

    page = await in_session(request, read)
    cache[slug] = page
    return page


def _noun(class_names: Sequence[str]) -> str:
    return "digit" if all(name.isdigit() for name in class_names) else "class"


def _label_page(request: Request, *, study: StudyPage, config: dict[str, Any]) -> HTMLResponse:
    context = {
        "title": "Label images",
        "noun": _noun(study.class_names),
        "num_items": study.most_items,
        "items_text": study.items_text,
        "config": {
            "acceptUrl": request.url_for("accept", slug=study.slug).path,
            **config,  # a source may name its own endpoints (Prolific does)
            "classNames": list(study.class_names),
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
        study = await _study(request, slug)
        if assignmentId == PREVIEW_ASSIGNMENT_ID:
            return templates.TemplateResponse(
                request,
                "preview.html",
                {
                    "title": "Label images (preview)",
                    "noun": _noun(study.class_names),
                    "items_text": study.items_text,
                    "class_names": list(study.class_names),
                },
            )
        config = {
            "mode": "mturk",
            "assignmentId": _check_id("assignmentId", assignmentId),
            "hitId": _check_id("hitId", hitId),
            "workerId": _check_id("workerId", workerId),
            "turkSubmitTo": normalized_submit_host(settings, turkSubmitTo),
        }
        return _label_page(request, study=study, config=config)
    except StudyError as error:
        return _message(request, error)


@router.get("/lab/{slug}", response_class=HTMLResponse)
async def lab_start(request: Request, slug: Slug, settings: SettingsDep) -> HTMLResponse:
    try:
        if not settings.local_mode:
            raise NotFoundError("the lab mode is off on this server")
        study = await _study(request, slug)
        return templates.TemplateResponse(
            request,
            "lab_start.html",
            {
                "title": "Label images",
                "slug": study.slug,
                "noun": _noun(study.class_names),
                "items_text": study.items_text,
                "pattern": ID_PATTERN[1:-1],
            },
        )
    except StudyError as error:
        return _message(request, error)


@router.get("/lab/{slug}/label", response_class=HTMLResponse)
async def lab_label(
    request: Request,
    slug: Slug,
    settings: SettingsDep,
    participant: QueryText = None,
) -> HTMLResponse:
    try:
        if not settings.local_mode:
            raise NotFoundError("the lab mode is off on this server")
        study = await _study(request, slug)
        return _label_page(
            request,
            study=study,
            config={"mode": "local", "workerId": _check_id("participant code", participant)},
        )
    except StudyError as error:
        return _message(request, error)
