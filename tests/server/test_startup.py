"""The server is ready before its first request: a study's first people arrive together,
and whatever the first request would do alone (configure the ORM, compile the templates,
render the hot statements, connect), the others would wait for. What exists once it is
ready lives as long as the server, so it is frozen out of the garbage collector's sight:
its full collections had walked all of it, 75-120 ms each, while every request waited."""

from __future__ import annotations

import asyncio
import gc

from study_server import operations
from study_server.api.app import create_app
from study_server.api.routes import pages
from testkit.servers import make_settings


def test_the_app_is_ready_before_its_first_request(database_url):
    app = create_app(make_settings(database_url, db_processes=0))
    templates = pages.templates.env
    templates.cache.clear()

    async def ready() -> dict:
        async with app.router.lifespan_context(app):
            loop_db = app.state.loop_db
            return {
                "compiled templates": len(templates.cache),
                "pooled connections": app.state.engine.pool.checkedin(),
                "frozen objects": gc.get_freeze_count(),
                "images statement rendered": (
                    loop_db is not None and operations._ITEM_IMAGES in loop_db.renderings
                ),
                "saves statement rendered": (
                    loop_db is not None and app.state.draft_saves.statement in loop_db.renderings
                ),
            }

    state = asyncio.run(ready())
    assert state["compiled templates"] == len(templates.list_templates()) > 0
    assert state["pooled connections"] >= 1 and state["frozen objects"] > 10_000
    on_postgresql = database_url.startswith("postgresql")
    assert state["images statement rendered"] == state["saves statement rendered"] == on_postgresql
    # Stopped: nothing is kept from the collector (an unfreeze is for the whole process, so
    # another app running in it meanwhile would lose its freeze too; nothing breaks).
    assert gc.get_freeze_count() == 0
