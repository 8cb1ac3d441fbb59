"""Values read from the database at most every few seconds, one read at a time per key.

The pages keep a study's data a while (`routes.pages.study_page`). When it has expired, or
on a fresh server, every request that arrives before the read ends used to read it again:
50 clients opening a study at once made 50 reads, each a thread hop and four queries,
queued behind one another (bench/server.py: previews at p99 ~300 ms). Here the first
request reads and the others wait for that read; a read abandoned by its request (the
client went away) still finishes for the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TimedReads(Generic[T]):
    """One per app (in `app.state`); keys are what the value is read for (a study's slug)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, T]] = {}
        self._reads: dict[str, asyncio.Task[T]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """The value kept for `key` if it is younger than `ttl_s`; else the read in flight
        for it, or a new one. A read that raises is kept by nobody: the next request reads."""
        kept = self._values.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.ttl_s:
            return kept[1]
        task = self._reads.get(key)
        if task is None:
            task = asyncio.ensure_future(read())
            self._reads[key] = task
            task.add_done_callback(lambda done: self._settle(key, done, time.monotonic()))
        return await asyncio.shield(task)

    def forget(self, key: str) -> None:
        """Read `key` afresh on the next request (its value changed): a read in flight now
        may predate the change, so its result is not kept either."""
        self._values.pop(key, None)
        self._reads.pop(key, None)

    def _settle(self, key: str, done: asyncio.Task[T], now: float) -> None:
        if done.cancelled():
            error = None
        else:
            error = done.exception()  # retrieved here: an abandoned read's error is not lost
        if self._reads.get(key) is not done:
            return  # forgotten meanwhile
        del self._reads[key]
        if not done.cancelled() and error is None:
            self._values[key] = (now, done.result())
