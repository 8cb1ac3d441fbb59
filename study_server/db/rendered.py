"""SQLAlchemy statements rendered once for psycopg, run on a bare driver connection.

Why: on PostgreSQL a statement run through SQLAlchemy cost about twice the CPU of the same
prepared statement on psycopg alone (0.23-0.32 ms against 0.13 ms here: compiling-cache
lookups, the execution context, result metadata; more through the ORM), and the study's
hot paths (a label's save, an accept, a submission) are nothing but such statements. The
statements stay SQLAlchemy expressions, written once for both backends: `RenderedStatement`
renders one for the dialect and applies the conversions SQLAlchemy would (enums to their
names, `UTCDateTime`, JSON) to its parameters and its rows. SQLite keeps SQLAlchemy.

`DriverStatements` answers the part of a `Session`'s interface the hot operations use
(`execute`, `scalar`, `scalars`, `commit`, `rollback`), so that an operation is written once
and runs on a Session (SQLite, and any caller that holds one) or on a driver connection.
Those operations use Core statements only: a driver row is a named tuple, never an ORM
object, and nothing is flushed behind a statement's back.

Round trips: an accept was 15 of them and a submission 12, each a wake-up of PostgreSQL and
of the process waiting for it, which on a busy machine costs more than the statement. So a
driver connection sends several statements in one round trip (psycopg's pipeline mode):
reads whose answers do not depend on each other (`execute_together`), and writes whose answer
nobody reads (`defer`), which go with the next statement that answers, or with the commit. An
accept is now 5 round trips and a submission 4 (tests/server/test_rendered.py counts them).
On a Session both run one statement after another, as written: the same results, in the
same order.
"""

from __future__ import annotations

import logging
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable


class RenderedStatement:
    """A SQLAlchemy statement rendered once for psycopg, with its value conversions."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            # A column default computed in Python would be skipped here, where SQLAlchemy
            # would have filled it in: name every such column in the statement instead.
            raise ValueError(f"statement needs Python-side defaults: {compiled.string}")
        self._compiled = compiled
        self._expanding = any(bind.expanding for bind in compiled.bind_names)
        # Prepared once per connection; one written out for a list's length is left to
        # psycopg (it prepares what it sees often).
        self.preparable: bool | None = None if self._expanding else True
        self.sql = compiled.string
        self._convert: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None and not bind.expanding:  # a list: each item, when expanded
                self._convert[name] = processor
        self._constants = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        self._fixed = self._converted(self._constants)
        self._dialect = dialect
        columns = compiled._result_columns  # (key, name, objects, type) of each result column
        self._types = [column[3] for column in columns]
        self._row = (
            namedtuple("Row", [column[0] for column in columns], rename=True) if columns else None
        )
        self._results: list[Callable[[Any], Any] | None] | None = None  # at the first rows

    def _converted(
        self, values: Mapping[str, Any], convert: Mapping[str, Callable[[Any], Any]] | None = None
    ) -> dict[str, Any]:
        """`values` by their converters (`convert`, the statement's own by default), None
        included, as SQLAlchemy does (JSON: 'null')."""
        convert = self._convert if convert is None else convert
        return {
            name: convert[name](value) if name in convert else value
            for name, value in values.items()
        }

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The statement's parameters: its constants, and `values` converted as SQLAlchemy would."""
        return {**self._fixed, **self._converted(values)}

    def sql_and_parameters(self, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The SQL and parameters for one run. An `IN` of a list (an expanding parameter)
        is written out for the list's length, as SQLAlchemy does at execution."""
        if not self._expanding:
            return self.sql, self.parameters(values)
        expanded = self._compiled.construct_expanded_state({**self._constants, **values})
        # The list's items by the expansion's converters, every other value by its own.
        convert = {**self._convert, **expanded.processors}
        return expanded.statement, self._converted(expanded.parameters, convert)

    def rows(self, raw: Sequence[tuple], description: Sequence[Any] | None) -> list[Any]:
        """Rows as named tuples (attribute access, like SQLAlchemy's rows), values converted.
        `description`: the cursor's (some conversions depend on the type the server sent)."""
        if self._row is None:
            return list(raw)
        if self._results is None:
            codes = [column.type_code for column in description or ()]
            self._results = [
                kind.dialect_impl(self._dialect).result_processor(self._dialect, code)
                for kind, code in zip(self._types, codes, strict=True)
            ]
        make, results = self._row._make, self._results
        if not any(results):
            return [make(row) for row in raw]
        return [
            make(
                value if process is None or value is None else process(value)
                for value, process in zip(row, results, strict=True)
            )
            for row in raw
        ]


log = logging.getLogger(__name__)

# More distinct statements than the code builds: past this, one was built per call.
MAX_RENDERINGS = 1000


class Renderings:
    """Each statement rendered once per dialect (build statements once, as module constants)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._rendered: dict[Executable, RenderedStatement] = {}

    def __call__(self, statement: Executable) -> RenderedStatement:
        rendered = self._rendered.get(statement)
        if rendered is None:
            rendered = RenderedStatement(statement, self.dialect)
            if len(self._rendered) < MAX_RENDERINGS:  # a statement built per call is not kept
                self._rendered[statement] = rendered
        return rendered

    def __contains__(self, statement: Executable) -> bool:
        return statement in self._rendered

    def render_module_statements(self, package: str) -> int:
        """Render now every statement built as a module constant in the loaded modules of
        `package` (how the hot paths build theirs), and configure the ORM's mappers, which
        the first statement built from a model would do: in a new database process the
        first accept otherwise paid 50-90 ms for both, and the first claims of a study
        arrive together. The number of statements rendered."""
        configure_mappers()
        statements = [
            value
            for name, module in list(sys.modules.items())
            if module is not None and (name == package or name.startswith(f"{package}."))
            for value in vars(module).values()
            if isinstance(value, Executable)
        ]
        for statement in statements:
            try:
                self(statement)
            except Exception as error:  # rendered (or refused) at its first use, as before
                log.debug("not rendered ahead: %s", error)
        return len(statements)


class Scalars:
    """The first column of each row (what `Session.scalars` answers)."""

    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def all(self) -> list[Any]:
        return self._values

    def first(self) -> Any:
        return self._values[0] if self._values else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)


class Rows:
    """A statement's rows, read at once (what a `Result` answers, for the calls used here)."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Scalars:
        return Scalars([row[0] for row in self._rows])

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class Database(Protocol):
    """What an operation written for both a `Session` and `DriverStatements` may call."""

    def execute(self, statement: Any, params: Any = None) -> Any: ...

    def scalar(self, statement: Any, params: Any = None) -> Any: ...

    def scalars(self, statement: Any, params: Any = None) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


# One statement to run: what it is, and its parameters (a list: one run for each).
Call = tuple[Executable, Mapping[str, Any] | list[Mapping[str, Any]] | None]


class DriverStatements:
    """Core statements on one psycopg connection, in its transaction (not autocommit)."""

    dialect_name = "postgresql"

    def __init__(self, connection: psycopg.Connection, renderings: Renderings) -> None:
        self.connection = connection
        self.renderings = renderings
        self._deferred: list[tuple[RenderedStatement, Any]] = []

    def execute(
        self,
        statement: Executable,
        params: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    ) -> Rows:
        """Like `Session.execute`: a list of parameter sets runs the statement once for each."""
        return self.execute_together([(statement, params)])[0]

    def execute_together(self, calls: Sequence[Call], *, commit: bool = False) -> list[Rows]:
        """Each call's rows, the calls (after any deferred writes) sent in one round trip and
        run in order; `commit`: the COMMIT goes with them. Where one fails, the error is
        raised and nothing after it ran."""
        runs = [*self._deferred, *((self.renderings(s), p) for s, p in calls)]
        self._deferred.clear()  # sent now, whatever happens: a failure rolls them back
        if len(runs) == 1 and not commit:  # alone: no pipeline to pay for
            cursors = [self._send(*runs[0])]
        else:
            with self.connection.pipeline():
                cursors = [self._send(*run) for run in runs]
                if commit and self.connection.info.transaction_status != TransactionStatus.IDLE:
                    # As a statement of the pipeline: `Connection.commit()` there waits for
                    # its answer, and leaving the pipeline then waits once more.
                    self.connection.execute("COMMIT", prepare=False)
        answered = len(runs) - len(calls)
        return [
            self._rows(rendered, cursor)
            for (rendered, _), cursor in zip(runs[answered:], cursors[answered:], strict=True)
        ]

    def defer(
        self,
        statement: Executable,
        params: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    ) -> None:
        """Run `statement` with the next round trip (a statement that answers, or the
        commit): for a write whose answer nobody reads. Its error, if any, is raised there."""
        self._deferred.append((self.renderings(statement), params))

    def _send(self, rendered: RenderedStatement, params: Any) -> psycopg.Cursor:
        if isinstance(params, list) and params:  # several runs (an insert of many rows)
            cursor = self.connection.cursor()
            cursor.executemany(rendered.sql, [rendered.parameters(p) for p in params])
            return cursor
        sql, parameters = rendered.sql_and_parameters(params or {})
        return self.connection.execute(sql, parameters, prepare=rendered.preparable)

    @staticmethod
    def _rows(rendered: RenderedStatement, cursor: psycopg.Cursor) -> Rows:
        if cursor.description is None:
            return Rows([])
        return Rows(rendered.rows(cursor.fetchall(), cursor.description))

    def scalar(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        return self.execute(statement, params or {}).scalar()

    def scalars(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Scalars:
        return self.execute(statement, params or {}).scalars()

    def commit(self) -> None:
        """Commit, the deferred writes sent with the COMMIT in one round trip."""
        if self._deferred:
            self.execute_together([], commit=True)
        else:
            self.connection.commit()

    def rollback(self) -> None:
        self._deferred.clear()
        self.connection.rollback()


def execute_together(db: Database, calls: Sequence[Call], *, commit: bool = False) -> list[Rows]:
    """Each call's rows (statements that return rows), then the commit if `commit`: on a
    driver connection in one round trip, on a Session one after another."""
    if isinstance(db, DriverStatements):
        return db.execute_together(calls, commit=commit)
    answers = [Rows(db.execute(statement, params).all()) for statement, params in calls]
    if commit:
        db.commit()
    return answers


def defer(
    db: Database,
    statement: Executable,
    params: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
) -> None:
    """A write whose answer nobody reads: on a driver connection sent with the next round
    trip (`DriverStatements.defer`), on a Session run at once."""
    if isinstance(db, DriverStatements):
        db.defer(statement, params)
    else:
        db.execute(statement, params)


def dialect_name(db: Database) -> str:
    """The SQL dialect `db` speaks (a Session's engine's, or a driver connection's)."""
    name = getattr(db, "dialect_name", None)
    return name if name is not None else db.get_bind().dialect.name  # type: ignore[attr-defined]


@contextmanager
def driver_statements(engine: Engine, renderings: Renderings) -> Iterator[DriverStatements]:
    """A pooled connection of `engine` (PostgreSQL), bare: rolled back if left in a
    transaction, then back to the pool."""
    pooled = engine.raw_connection()
    try:
        yield DriverStatements(pooled.driver_connection, renderings)
    except psycopg.OperationalError as error:
        if pooled.driver_connection.broken:
            # The database restarted or ended the session: its other idle connections are
            # gone too. As SQLAlchemy does on a disconnect, one request fails, the pool renews.
            pooled.invalidate(error)
            engine.pool.dispose()
        raise
    finally:
        pooled.close()  # the pool rolls back what was left open
