"""The study server with the dashboard mounted: what the deployment serves.

    study-server serve --app analysis.dashboard.app:create_app
    uvicorn --factory analysis.dashboard.app:create_app

`study_server` may not import `analysis` (docs/architecture.md), so the server's own factory
knows nothing of the dashboard; this one builds the server's app and adds the dashboard's
routes, static files and state to it (`install`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from analysis.dashboard.results import ResultCache
from analysis.dashboard.routes import Dashboard, NotSignedIn, not_signed_in, router
from analysis.dashboard.session import LoginThrottle, Sessions
from study_server.api.app import create_app as create_server_app
from study_server.settings import Settings, get_settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
RESULTS_TTL_S = 60.0  # Table 2 and the figure are recomputed at most once a minute per page


def install(app: FastAPI, settings: Settings, *, results_ttl_s: float = RESULTS_TTL_S) -> None:
    """Mount the dashboard on the study server's `app` (made from the same `settings`)."""
    app.state.dashboard = Dashboard(
        sessions=Sessions(settings.admin_token),
        throttle=LoginThrottle(app.state.clients),
        cache=ResultCache(ttl_s=results_ttl_s),
    )
    app.add_exception_handler(NotSignedIn, not_signed_in)  # type: ignore[arg-type]
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_server_app(settings)
    install(app, settings)
    return app
