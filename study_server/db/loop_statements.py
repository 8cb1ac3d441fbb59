"""The study's hottest statements run on the event loop, over psycopg 3's async driver
(PostgreSQL only).

Why: a request whose database work goes to the thread pool pays for the hop, the thread's
wake-up and the GIL handed back and forth between the loop and the thread, and SQLAlchemy's
execution around the statement; on two cores that cost more CPU than the statement itself.
A label saved as it is given (half of a study's requests; `save_draft_statement`) is one
round trip in autocommit: awaited on the loop it took 0.43-0.60 ms of server CPU instead of
0.95-1.26 ms, and its p99 alone fell from 143-179 ms to 43-53 ms (`bench/server.py --steps`,
50 clients). SQLAlchemy's own async engine was tried in an earlier round and cost more than
the thread pool (it runs every call through a greenlet).

Labels saved at the same moment go as one statement (`LoopBatch`): the driver's and the
loop's cost per round trip, and PostgreSQL's per statement, is then paid once for them all.

The statements stay SQLAlchemy expressions, written once for both backends, rendered once
for psycopg (`rendered.RenderedStatement`, with the conversions SQLAlchemy would apply).
SQLite has no async driver here: there, and for anything more than one statement, the
thread pool stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection, DataError, OperationalError
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from sqlalchemy.sql.expression import Executable

from study_server.db.rendered import Renderings


class LoopDatabase:
    """A small pool of autocommit connections used from the event loop."""

    def __init__(self, engine: Engine, *, size: int) -> None:
        _, connect_args = engine.dialect.create_connect_args(engine.url)
        self.engine = engine
        self.pool = AsyncConnectionPool(
            kwargs={**connect_args, "autocommit": True},
            connection_class=AsyncConnection,
            min_size=1,
            max_size=size,
            # A request waits this long for a connection (the database down, or every
            # connection busy), then fails with 500, as the thread pool's requests do.
            timeout=10.0,
            open=False,
            name="loop-statements",
        )
        # Every statement rendered once, for the loop and for `rendered.DriverStatements`.
        self.renderings = Renderings(engine.dialect)

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def rows(
        self, statement: Executable, values: Mapping[str, Any], *, repeatable: bool = False
    ) -> list[tuple]:
        """Every row `statement` returns (committed: each statement is its own transaction).

        `repeatable`: the statement may run twice (an upsert of the same values), so when the
        connection it got turns out broken (the database restarted or ended the session since
        the pool last used it) it runs again on another one, instead of failing the request.
        Whether a statement on a connection that broke under it was committed cannot be told,
        so anything else fails as it would on the thread pool."""
        rendered = self.renderings(statement)
        parameters = rendered.parameters(values)
        attempts = self.pool.max_size + 1 if repeatable else 1  # every pooled one may be broken
        for attempt in range(1, attempts + 1):
            connection: AsyncConnection | None = None
            try:
                async with self.pool.connection() as connection:
                    cursor = await connection.execute(rendered.sql, parameters, prepare=True)
                    return rendered.rows(await cursor.fetchall(), cursor.description)
            except OperationalError:
                if attempt == attempts or connection is None or not connection.broken:
                    raise
        raise AssertionError("unreachable")


class LoopBatch:
    """Runs of one statement that arrive together go to the database as one.

    Half of a study's requests save a label, each one round trip that cost the server more
    CPU in the driver and the event loop than in the statement, and PostgreSQL a statement
    each. Here a run waits for the rest of the loop's turn (or, when every pooled connection
    already has a batch out, for one of those to come back); the runs waiting then go as one
    statement that takes an array per input (`operations.save_drafts_statement`), up to
    `max_rows`, at most one batch per pooled connection at a time. Under no load a batch is
    one run, sent at once.

    `statement` takes each input name of the runs' values as an array, and `index` (the
    runs' order); its rows are the indexes it did something for. A batch that PostgreSQL or
    the driver refuses for its data (a value out of range, say) is sent again one run at a
    time, so each run fails, or not, as it would alone; a batch that fails for any other
    reason (the database unreachable) fails each of its runs with that error.
    """

    def __init__(
        self, database: LoopDatabase, statement: Executable, *, max_rows: int = 100
    ) -> None:
        self.database = database
        self.statement = statement
        self.max_rows = max_rows
        self._waiting: list[tuple[Mapping[str, Any], asyncio.Future[bool]]] = []
        self._senders: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def run(self, values: Mapping[str, Any]) -> bool:
        """Whether the statement did something for `values` (a row came back for it)."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((values, answer))
        if len(self._senders) < self.database.pool.max_size:
            # Its first step comes after this turn's other callbacks: their runs join it.
            sender = asyncio.ensure_future(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await answer

    async def _send(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_rows]
            del self._waiting[: self.max_rows]
            try:
                await self._answer(batch)
            finally:  # cancelled (the server stopping): nobody waits forever
                for _, answer in batch:
                    if not answer.done():
                        answer.cancel()

    async def _answer(self, batch: list[tuple[Mapping[str, Any], asyncio.Future[bool]]]) -> None:
        try:
            done = await self._rows([values for values, _ in batch])
        except (DataError, ValueError, TypeError, OverflowError) as error:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(error)
                return
            for one in batch:  # which run it was, and only that one fails
                await self._answer([one])
            return
        except Exception as error:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        for index, (_, answer) in enumerate(batch):
            if not answer.done():  # a request that went away has cancelled its answer
                answer.set_result(index in done)

    async def _rows(self, runs: list[Mapping[str, Any]]) -> set[int]:
        arrays = {name: [run[name] for run in runs] for name in runs[0]}
        arrays["index"] = list(range(len(runs)))
        rows = await self.database.rows(self.statement, arrays, repeatable=True)
        return {row[0] for row in rows}
