"""Request dependencies: the settings and a database session per request, admin auth.

The engine and session factory are made once per app (`create_app`) and kept on
`app.state`; nothing is module-global, so tests run several apps side by side.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from study_server.db.processes import ProcessLost
from study_server.db.rendered import Database, driver_statements
from study_server.db.session import write_connection
from study_server.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    """Async, though it awaits nothing: FastAPI runs a plain `def` dependency in the thread
    pool, which cost the accept and every page a thread hop (a hand-over of Python's lock and
    a turn of the event loop, 10-30 ms under load) to read an attribute."""
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
T = TypeVar("T")


async def in_session(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` with a fresh session in the threadpool, in one hop.

    For the labeling API's hot paths (every image, accept, submit). A sync `SessionDep`
    plus a sync handler cost three thread hops per request (dependency enter, handler,
    dependency exit), which measured more than the query itself (bench/server.py).
    """

    def run() -> T:
        with request.app.state.session_factory() as session:
            return work(session)

    return await run_in_threadpool(run)


async def in_database(request: Request, work: Callable[[Database], T]) -> T:
    """Run `work` on a bare driver connection on PostgreSQL (`rendered.DriverStatements`:
    each statement about half the CPU it costs through SQLAlchemy), in one of the app's
    database processes (`db/processes.py`; `work` must then be picklable) or else in the
    threadpool, in one hop; on SQLite with a session. For the accept and the submission,
    written for both."""
    processes = request.app.state.db_processes
    if processes is not None:
        try:
            return await processes.run(work)
        except ProcessLost as error:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the server lost the process running this request; send it again",
                headers={"Retry-After": "1"},
            ) from error
    loop_db = request.app.state.loop_db  # PostgreSQL only; its statements, rendered once
    if loop_db is None:
        return await in_session(request, work)

    def run() -> T:
        with driver_statements(request.app.state.engine, loop_db.renderings) as db:
            return work(db)

    return await run_in_threadpool(run)


async def in_connection(request: Request, work: Callable[[Connection], T]) -> T:
    """Run `work` in the threadpool with a connection in a write transaction: for one Core
    statement, where a Session's set-up would cost more than the statement."""

    def run() -> T:
        with write_connection(request.app.state.engine) as connection:
            return work(connection)

    return await run_in_threadpool(run)


async def require_admin(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """`Authorization: Bearer <ADVCRITIC_ADMIN_TOKEN>`; with no token configured, no admin.
    Async for the reason `get_app_settings` is: it only compares."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "admin endpoints are off: set ADVCRITIC_ADMIN_TOKEN",
        )
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.admin_token.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin endpoints need the header 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(require_admin)
