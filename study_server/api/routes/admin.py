"""Admin endpoints (progress, export as CSV or JSON), behind the token from settings."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from study_server.api.deps import AdminDep, SessionDep
from study_server.db.models import Study
from study_server.errors import StudyError
from study_server.export import label_rows, study_markets, study_meta, to_csv
from study_server.operations import StudyProgress, study_progress
from study_server.slug import Slug

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


@router.get("/studies")
def list_studies(session: SessionDep) -> list[StudyProgress]:
    slugs = session.scalars(select(Study.slug).order_by(Study.id)).all()
    return [study_progress(session=session, study_slug=slug) for slug in slugs]


@router.get("/studies/{slug}/progress")
def progress(slug: Slug, session: SessionDep) -> StudyProgress:
    try:
        return study_progress(session=session, study_slug=slug)
    except StudyError as error:
        raise HTTPException(error.status, error.reason) from error


@router.get("/studies/{slug}/export")
def export(
    slug: Slug, session: SessionDep, format: Annotated[Literal["csv", "json"], Query()] = "csv"
) -> Response:
    try:
        study, rows = label_rows(session=session, study_slug=slug)
        markets = study_markets(session, study)
    except StudyError as error:
        raise HTTPException(error.status, error.reason) from error
    disposition = {"Content-Disposition": f'attachment; filename="{study.slug}-labels.{format}"'}
    if format == "csv":
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers=disposition)
    return Response(
        json.dumps({"study": study_meta(study, markets=markets), "labels": rows}, indent=1),
        media_type="application/json",
        headers=disposition,
    )
