"""The FastAPI app, built from a `Settings` (`create_app`), or from the environment for uvicorn.

uvicorn --factory study_server.api.app:create_app     # what `study-server serve` runs
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import configure_mappers

from study_server.api.clients import ClientGate, RateLimit
from study_server.api.route_paths import RoutePaths
from study_server.api.routes import admin, health, labeling, pages, prolific
from study_server.api.security import BodySizeLimit, SecurityHeaders
from study_server.api.timed_reads import TimedReads
from study_server.db.loop_statements import LoopBatch, LoopDatabase
from study_server.db.processes import DatabaseProcesses
from study_server.db.session import create_db_engine, create_session_factory, is_sqlite
from study_server.db.store import record_event
from study_server.item_cache import ItemImageCache
from study_server.operations import save_drafts_statement
from study_server.settings import Settings, get_settings

# What the database processes' fork server imports once: the jobs they are sent.
DB_PROCESS_PRELOAD = ("study_server.api.routes.labeling",)
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def _warm_up(app: FastAPI) -> None:
    """Before the first request, what it would otherwise do while the others wait behind
    it: configure the ORM's mappers, compile the templates, render the hot statements and
    open a pooled connection. A study's first people arrive together; the first of 50
    pages asked at once took 60-90 ms, and so did the 49 behind it (bench/server.py)."""
    state = app.state
    configure_mappers()
    pages.compile_templates()
    if state.loop_db is not None:
        state.loop_db.renderings(state.draft_saves.statement)  # half of a study's requests
        if state.db_processes is None:  # the accepts and submissions run in this process
            state.loop_db.renderings.render_module_statements(__package__.partition(".")[0])
    with state.engine.connect():
        pass


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # One pooled connection per database thread, and a few for anything outside the pool of
    # threads (the rate limit's audit): a request never opens a connection of its own.
    engine = create_db_engine(settings.database_url, pool_size=settings.db_threads, max_overflow=4)

    # PostgreSQL: the one-statement hot paths run on the event loop (loop_statements.py).
    loop_db = (
        None
        if is_sqlite(settings.database_url)
        else LoopDatabase(engine, size=settings.db_loop_connections)
    )

    # PostgreSQL: the accepts and submissions run in processes of their own (db/processes.py).
    db_processes = (
        DatabaseProcesses(settings.database_url, settings.db_processes, preload=DB_PROCESS_PRELOAD)
        if loop_db is not None and settings.db_processes
        else None
    )

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_threads
        # Per process, so here: each of `serve --workers N` runs this lifespan.
        switch_interval = sys.getswitchinterval()
        try:
            sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
            _warm_up(running)
            if loop_db is not None:
                await loop_db.open()
            if db_processes is not None:
                await db_processes.open()
            # What exists now lives as long as the server: out of the collector's sight.
            # Its full collections walked all of it, 75-120 ms each, about once a second
            # under 50 clients, while every request waited; now 2-3 ms (bench/server.py).
            # Nothing is collected first: a full collection here took 90 ms and found 10
            # unreachable objects, which are all a freeze keeps from the collector.
            gc.freeze()
            yield
        finally:
            gc.unfreeze()  # an app run inside another process (tests) leaves nothing kept
            sys.setswitchinterval(switch_interval)
            if db_processes is not None:
                await db_processes.close()
            if loop_db is not None:
                await loop_db.close()
            engine.dispose()

    app = FastAPI(
        title="Adversary-critic labeling study",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.loop_db = loop_db
    app.state.db_processes = db_processes
    # PostgreSQL: labels saved together go as one statement (loop_statements.LoopBatch).
    app.state.draft_saves = None if loop_db is None else LoopBatch(loop_db, save_drafts_statement())
    app.state.session_factory = session_factory = create_session_factory(engine)
    app.state.clients = gate = ClientGate(settings)
    app.state.item_images = ItemImageCache()
    app.state.route_paths = RoutePaths()
    # slug -> pages.StudyPage, kept a while: a study's images never change once imported
    app.state.study_pages = TimedReads[pages.StudyPage](pages.STUDY_PAGE_TTL_S)
    app.include_router(labeling.router)  # first: half of a study's requests save a label
    app.include_router(pages.router)
    app.include_router(prolific.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def audit_rate_limited(detail: dict) -> None:
        with session_factory() as session:
            record_event(session, kind="rate_limited", detail=detail)
            session.commit()

    # Added last = outermost: the size cap runs before anything reads the body; refusals
    # of the rate limit still carry the security headers.
    app.add_middleware(RateLimit, gate=gate, audit=audit_rate_limited)
    app.add_middleware(SecurityHeaders, settings=settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
