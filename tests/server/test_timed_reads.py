"""Values kept a while, read once at a time (study_server/api/timed_reads.py), and the pages
that use them: 30 first requests for a study read it once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import event

from study_server.api.app import create_app
from study_server.api.timed_reads import TimedReads
from testkit.servers import make_settings
from testkit.studies import import_study


class Reads:
    """A read that counts its calls and waits for `release` before it answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail = False

    async def __call__(self) -> str:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        if self.fail:
            raise LookupError(f"read {number} failed")
        return f"value {number}"


def test_requests_during_a_read_share_it_and_the_value_is_kept_for_the_ttl():
    async def run() -> None:
        reads, kept = Reads(), TimedReads[str](ttl_s=60)
        waiting = [asyncio.ensure_future(kept.get("s", reads)) for _ in range(30)]
        await asyncio.sleep(0)
        reads.release.set()
        assert await asyncio.gather(*waiting) == ["value 1"] * 30
        assert await kept.get("s", reads) == "value 1"
        assert await kept.get("other", reads) == "value 2"  # each key its own read
        assert reads.calls == 2

    asyncio.run(run())


def test_an_expired_value_is_read_again():
    async def run() -> None:
        reads, kept = Reads(), TimedReads[str](ttl_s=0.05)
        reads.release.set()
        assert await kept.get("s", reads) == "value 1"
        await asyncio.sleep(0.1)
        assert await kept.get("s", reads) == "value 2"

    asyncio.run(run())


def test_a_failed_read_fails_every_waiter_and_is_not_kept():
    async def run() -> None:
        reads, kept = Reads(), TimedReads[str](ttl_s=60)
        reads.fail = True
        waiting = [asyncio.ensure_future(kept.get("s", reads)) for _ in range(3)]
        await asyncio.sleep(0)
        reads.release.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert [str(o) for o in outcomes] == ["read 1 failed"] * 3
        reads.fail = False
        assert await kept.get("s", reads) == "value 2"

    asyncio.run(run())


def test_a_read_that_predates_forget_is_not_kept():
    async def run() -> None:
        reads, kept = Reads(), TimedReads[str](ttl_s=60)
        old = asyncio.ensure_future(kept.get("s", reads))
        await asyncio.sleep(0)
        kept.forget("s")  # e.g. a new consent text: the read in flight may have missed it
        new = asyncio.ensure_future(kept.get("s", reads))
        await asyncio.sleep(0)
        reads.release.set()
        assert (await old, await new) == ("value 1", "value 2")
        assert await kept.get("s", reads) == "value 2"
        assert reads.calls == 2

    asyncio.run(run())


def test_a_waiter_that_goes_away_does_not_cancel_the_read_for_the_others():
    async def run() -> None:
        reads, kept = Reads(), TimedReads[str](ttl_s=60)
        first = asyncio.ensure_future(kept.get("s", reads))
        second = asyncio.ensure_future(kept.get("s", reads))
        await asyncio.sleep(0)
        first.cancel()  # the client that started the read disconnected
        await asyncio.sleep(0)
        reads.release.set()
        assert await second == "value 1"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert reads.calls == 1

    asyncio.run(run())


def test_thirty_first_page_requests_read_the_study_once(sqlite_database_url, small_bundle):
    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    app = create_app(make_settings(sqlite_database_url))
    study_reads = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM studies" in statement:
            study_reads.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", count)
    preview = {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"}

    async def run() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as web:
                answers = await asyncio.gather(
                    *(web.get(f"/hit/{study.slug}", params=preview) for _ in range(30))
                )
                return [answer.status_code for answer in answers]

    assert asyncio.run(run()) == [200] * 30
    assert len(study_reads) == 1
