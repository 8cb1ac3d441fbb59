"""The study's hottest statements run on the event loop, over psycopg 3's async driver
(PostgreSQL only).

Why: a request whose database work goes to the thread pool pays for the hop, the thread's
wake-up and the GIL handed back and forth between the loop and the thread, and SQLAlchemy's
execution around the statement; on two cores that cost more CPU than the statement itself.
A label saved as it is given (`save_draft_statement`, half of a study's requests) is one
round trip in autocommit: awaited on the loop it took 0.43-0.60 ms of server CPU instead of
0.95-1.26 ms, and its p99 alone fell from 143-179 ms to 43-53 ms (`bench/server.py --steps`,
50 clients). SQLAlchemy's own async engine was tried in an earlier round and cost more than
the thread pool (it runs every call through a greenlet).

The statements stay SQLAlchemy expressions, written once for both backends: `LoopStatement`
renders one for the engine's dialect and applies the same parameter conversions (enums to
their names, `UTCDateTime`) that SQLAlchemy would. SQLite has no async driver here: there,
and for anything more than one statement, the thread pool stays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from psycopg import AsyncConnection, OperationalError
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from sqlalchemy.sql.expression import Executable


class LoopStatement:
    """A SQLAlchemy statement rendered once for psycopg, with its parameter conversions."""

    def __init__(self, statement: Executable, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = compiled.string
        self._convert: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
            if processor is not None:
                self._convert[name] = processor
        self._fixed = self._converted(
            {
                name: bind.effective_value
                for bind, name in compiled.bind_names.items()
                if not bind.required
            }
        )

    def _converted(self, values: Mapping[str, Any]) -> dict[str, Any]:
        convert = self._convert
        return {
            name: value if value is None or name not in convert else convert[name](value)
            for name, value in values.items()
        }

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The statement's parameters: its constants, and `values` converted as SQLAlchemy would."""
        return {**self._fixed, **self._converted(values)}


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
        self._statements: dict[Executable, LoopStatement] = {}

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    def statement(self, statement: Executable) -> LoopStatement:
        """`statement` rendered, once per statement object (build statements once, like
        `operations.save_draft_statement`)."""
        rendered = self._statements.get(statement)
        if rendered is None:
            rendered = self._statements[statement] = LoopStatement(statement, self.engine)
        return rendered

    async def first(
        self, statement: Executable, values: Mapping[str, Any], *, repeatable: bool = False
    ) -> tuple | None:
        """The first row `statement` returns (committed: each statement is its own transaction).

        `repeatable`: the statement may run twice (an upsert of the same values), so when the
        connection it got turns out broken (the database restarted or ended the session since
        the pool last used it) it runs again on another one, instead of failing the request.
        Whether a statement on a connection that broke under it was committed cannot be told,
        so anything else fails as it would on the thread pool."""
        rendered = self.statement(statement)
        parameters = rendered.parameters(values)
        attempts = self.pool.max_size + 1 if repeatable else 1  # every pooled one may be broken
        for attempt in range(1, attempts + 1):
            connection: AsyncConnection | None = None
            try:
                async with self.pool.connection() as connection:
                    cursor = await connection.execute(rendered.sql, parameters, prepare=True)
                    return await cursor.fetchone()
            except OperationalError:
                if attempt == attempts or connection is None or not connection.broken:
                    raise
        raise AssertionError("unreachable")
