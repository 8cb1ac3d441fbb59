"""Database work in processes of their own: the accepts and submissions on PostgreSQL.

Why: an accept was some 14 round trips to PostgreSQL (13 statements and the commit), a
submission about as many (5 and 4 since, `rendered.execute_together`). Run in the server's
thread pool, each round trip waits for Python's lock, which the event loop holds while it
serves the images and label saves, and the reply waits for a turn of that loop. Under 50 clients each hand-over cost 10-30 ms, so
accepts set the study's p99 at 2.6-3.2x a bare endpoint's while taking a few ms of CPU
(docs/benchmarks.md, fourth round). Here the round trips happen in a process with its own
lock and nothing else to do, and the event loop sees one message out and one back: no thread
of the server's is involved. In processes the study's p99 was 2.05-2.72x the bare
endpoint's against 3.56-4.62x in threads, in the same session (fifth round).

A job is any picklable callable taking a `rendered.Database`; it runs on one bare driver
connection (`rendered.driver_statements`), exactly as in the thread pool. Each process runs
one job at a time; jobs beyond the processes wait in order. A job's exception comes back as
itself, with its cause (`_Failure`), so callers handle refusals as they would in a thread.
A process that dies fails its job with `ProcessLost` and is replaced.

The processes are started from a fork server that has imported `preload` once, so starting
one costs a fork, not an interpreter's start-up: cheap enough for every app, tests included.
Before it says it is ready, a process renders the statements of `preload`'s package and
freezes what it holds out of the garbage collector's sight (`serve_jobs`): a study's first
claims arrive together, and the first job would otherwise pay 50-90 ms for the rendering
while the others queued behind it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from study_server.db.rendered import Database, Renderings, driver_statements
from study_server.db.session import create_db_engine

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long a process may take to start and reach the database before the server gives up.
START_TIMEOUT_S = 60.0
# How long to wait before trying again to start a process in place of one that ended.
REPLACE_RETRY_S = 1.0
# How long a closing process may finish its job before it is killed.
STOP_TIMEOUT_S = 5.0


class ProcessLost(RuntimeError):
    """The process running a job ended before it answered (killed, or crashed): whether the
    job's transaction committed is unknown, as with a connection lost mid-commit."""


@dataclass(frozen=True)
class _Failure:
    """An exception that crossed from a process, rebuilt without calling its `__init__`:
    web exceptions, for one, do not pass their arguments on and so do not pickle."""

    kind: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]
    cause: _Failure | None = None

    @classmethod
    def of(cls, error: BaseException) -> _Failure:
        cause = None if error.__cause__ is None else cls.of(error.__cause__)
        failure = cls(type(error), error.args, dict(vars(error)), cause)
        try:
            pickle.dumps(failure)
        except Exception:  # an exception of a class or with state that cannot travel
            return cls(RuntimeError, (f"{type(error).__name__}: {error}",), {}, cause)
        return failure

    def rebuilt(self) -> BaseException:
        try:
            error = self.kind.__new__(self.kind)
            error.args = self.args
            vars(error).update(self.state)
        except Exception:  # a class whose instances are not made this way (one written in C)
            error = RuntimeError(f"{self.kind.__name__}: {', '.join(map(str, self.args))}")
        if self.cause is not None:
            error.__cause__ = self.cause.rebuilt()
        return error


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    # The job in flight (or, while starting, the wait for "ready"); None when idle.
    answer: asyncio.Future[Any] | None = None


class DatabaseProcesses:
    """`size` processes, each with one connection to `database_url`, that run jobs for the
    event loop of the process that opened them (`open`, then `run`, then `close`).

    `preload`: the modules the fork server imports once, so that each process starts with
    them: the modules of the jobs it will be sent."""

    def __init__(self, database_url: str, size: int, *, preload: Sequence[str]) -> None:
        self.database_url = database_url
        self.size = size
        self.preload = tuple(preload)
        # Whose module statements a process renders before it says it is ready.
        self._packages = tuple(sorted({module.partition(".")[0] for module in preload}))
        self._opened = False
        self._closing = False
        self._workers: list[_Worker] = []
        self._idle: deque[_Worker] = deque()
        self._waiting: deque[tuple[bytes, asyncio.Future[Any]]] = deque()
        self._replacements: set[asyncio.Task[None]] = set()
        # Why no process could be started in place of a lost one, while none is running.
        self._unavailable: str | None = None

    async def open(self) -> None:
        """Start the processes and wait until each has reached the database; if one cannot,
        stop those that did and raise its reason."""
        self._closing = False
        results = await asyncio.gather(
            *(self._start() for _ in range(self.size)), return_exceptions=True
        )
        started = [r for r in results if isinstance(r, _Worker)]
        failed = [r for r in results if not isinstance(r, _Worker)]
        if failed:
            for worker in started:
                self._detach(worker)
            await asyncio.gather(*(asyncio.to_thread(_stop, w.process) for w in started))
            raise failed[0]
        self._workers.extend(started)
        self._idle.extend(started)
        self._opened = True

    async def run(self, job: Callable[[Database], T]) -> T:
        """`job(db)` in one of the processes; its value, or its exception raised here."""
        if self._closing or not self._opened:
            raise RuntimeError("the database processes are not open")
        if not self._workers and self._unavailable is not None:
            raise ProcessLost(f"no database process is running: {self._unavailable}")
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._idle:
            self._send(self._idle.popleft(), payload, answer)
        else:
            self._waiting.append((payload, answer))
        outcome = await answer
        if isinstance(outcome, _Failure):
            raise outcome.rebuilt()
        return outcome

    async def close(self) -> None:
        """End every process: jobs still waiting fail, jobs in flight get their answers
        (for `STOP_TIMEOUT_S` at most), then each process sees its pipe close and exits."""
        self._closing = True
        replacements = list(self._replacements)
        for task in replacements:
            task.cancel()
        await asyncio.gather(*replacements, return_exceptions=True)
        self._fail_waiting(ProcessLost("the server is stopping"))
        in_flight = [w.answer for w in self._workers if w.answer is not None]
        if in_flight:
            await asyncio.wait([asyncio.shield(a) for a in in_flight], timeout=STOP_TIMEOUT_S)
        workers, self._workers = self._workers, []
        self._idle.clear()
        for worker in workers:
            self._detach(worker)
            if worker.answer is not None and not worker.answer.done():
                worker.answer.set_exception(ProcessLost("the server stopped during the job"))
        await asyncio.gather(*(asyncio.to_thread(_stop, worker.process) for worker in workers))

    def pids(self) -> list[int]:
        """The processes' ids (for tests and for whoever watches the server's processes)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def _start(self) -> _Worker:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(self.preload))
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=serve_jobs,
            args=(self.database_url, theirs, self._packages),
            name="advcritic-db-process",
            daemon=True,
        )
        try:
            # The first start launches the fork server (an interpreter importing `preload`).
            await asyncio.to_thread(process.start)
        except BaseException:
            ours.close()
            if process.pid is not None:  # started after all (cancelled while it started)
                await asyncio.to_thread(_stop, process)
            raise
        finally:
            theirs.close()
        worker = _Worker(process, ours)
        loop = asyncio.get_running_loop()
        worker.answer = loop.create_future()
        loop.add_reader(ours.fileno(), self._answered, worker)
        try:
            ready = await asyncio.wait_for(asyncio.shield(worker.answer), START_TIMEOUT_S)
            if isinstance(ready, _Failure):  # it could not reach the database
                raise ready.rebuilt()
        except BaseException:
            self._detach(worker)
            await asyncio.to_thread(_stop, process)
            raise
        worker.answer = None
        return worker

    def _send(self, worker: _Worker, payload: bytes, answer: asyncio.Future[Any]) -> None:
        worker.answer = answer
        try:
            worker.connection.send_bytes(payload)
        except OSError:
            self._lost(worker)

    def _answered(self, worker: _Worker) -> None:
        """The event loop's callback when a process has written its answer."""
        try:
            message = worker.connection.recv_bytes()
        except (EOFError, OSError):
            self._lost(worker)
            return
        try:
            outcome = pickle.loads(message)
        except Exception as error:  # the job's answer, not the process, is at fault
            outcome = _Failure.of(RuntimeError(f"a database process's answer: {error!r}"))
        answer, worker.answer = worker.answer, None
        if answer is not None and not answer.done():  # done: the caller went away
            answer.set_result(outcome)
        if worker in self._workers:
            self._next_job(worker)

    def _fail_waiting(self, error: Exception) -> None:
        for _, answer in self._waiting:
            if not answer.done():
                answer.set_exception(error)
        self._waiting.clear()

    def _next_job(self, worker: _Worker) -> None:
        while self._waiting:
            payload, answer = self._waiting.popleft()
            if not answer.done():  # a caller that went away while waiting is skipped
                self._send(worker, payload, answer)
                return
        self._idle.append(worker)

    def _lost(self, worker: _Worker) -> None:
        """A process ended without answering: its job fails, another process takes its place."""
        self._detach(worker)
        if worker.answer is not None and not worker.answer.done():
            worker.answer.set_exception(
                ProcessLost(f"database process {worker.process.pid} ended during a job")
            )
        worker.answer = None
        if worker in self._workers:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            if not self._closing:
                task = asyncio.get_running_loop().create_task(self._replace(worker))
                self._replacements.add(task)
                task.add_done_callback(self._replacements.discard)

    async def _replace(self, lost: _Worker) -> None:
        """Start a process in place of `lost`; jobs wait meanwhile. The database may be the
        reason it died (a restart): then keep trying, once a second, until it answers, and
        while no process runs at all, fail the jobs (503) rather than keep them waiting."""
        await asyncio.to_thread(_stop, lost.process)
        log.warning("database process %s ended during a job; starting another", lost.process.pid)
        while True:
            try:
                worker = await self._start()
                break
            except Exception as error:
                log.warning("could not start a database process (%s); trying again", error)
                if not self._workers:
                    self._unavailable = f"{type(error).__name__}: {error}"
                    self._fail_waiting(ProcessLost(f"no database process is running: {error}"))
                await asyncio.sleep(REPLACE_RETRY_S)
        self._unavailable = None
        if self._closing:
            self._detach(worker)
            await asyncio.to_thread(_stop, worker.process)
            return
        self._workers.append(worker)
        self._next_job(worker)

    def _detach(self, worker: _Worker) -> None:
        try:
            asyncio.get_running_loop().remove_reader(worker.connection.fileno())
        except (OSError, ValueError):  # already closed
            pass
        worker.connection.close()


def _stop(process: BaseProcess) -> None:
    process.join(STOP_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join()


def serve_jobs(database_url: str, connection: Connection, packages: Sequence[str] = ()) -> None:
    """A database process's whole life: reach the database, render the statements of
    `packages`, say it is ready, then run jobs until the server closes the pipe.

    Ctrl-C in a terminal reaches the whole process group; the server decides when its
    processes stop, so they ignore it, and SIGTERM to the group: they end when the server
    closes their pipe, or are killed `STOP_TIMEOUT_S` later."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a service manager's stop of the group
    try:
        engine = create_db_engine(database_url, pool_size=1, max_overflow=0)
        renderings = Renderings(engine.dialect)
        with driver_statements(engine, renderings):
            pass  # one connection made now, not by the first accept
        for package in packages:  # of the jobs' modules, which the fork server imported
            renderings.render_module_statements(package)
        gc.freeze()  # what lives as long as the process: no full collection walks it again
    except Exception as error:
        connection.send_bytes(_pickled(_Failure.of(error)))
        return
    connection.send_bytes(_pickled(os.getpid()))
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:
            break
        try:
            job = pickle.loads(message)
            with driver_statements(engine, renderings) as db:
                outcome = job(db)
        except Exception as error:
            if not _expected(error):
                traceback.print_exc(file=sys.stderr)
            outcome = _Failure.of(error)
        try:
            connection.send_bytes(_pickled(outcome))
        except OSError:  # the server is gone
            break
    engine.dispose()


def _pickled(outcome: Any) -> bytes:
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # a value that cannot travel fails its job, not the process
        return pickle.dumps(_Failure.of(TypeError(f"the job's answer cannot be sent: {error}")))


def _expected(error: Exception) -> bool:
    """A refusal the caller turns into an answer (an HTTP 4xx): nothing to log here."""
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and status < 500
