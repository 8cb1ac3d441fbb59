"""The server process lets a waiting thread have Python's lock after
`gil_switch_interval_ms` (the accepts and submits run in threads beside a busy event loop),
and gives the interpreter back its own interval when the app stops."""

from __future__ import annotations

import asyncio
import sys

import pytest

from study_server.api.app import create_app
from testkit.servers import make_settings


def test_the_app_sets_the_switch_interval_while_it_runs(sqlite_database_url):
    before = sys.getswitchinterval()
    app = create_app(make_settings(sqlite_database_url, gil_switch_interval_ms=0.5))

    async def run() -> float:
        async with app.router.lifespan_context(app):
            return sys.getswitchinterval()

    assert asyncio.run(run()) == pytest.approx(0.0005)
    assert sys.getswitchinterval() == before
