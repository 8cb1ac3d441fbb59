"""Accepts and submissions in database processes of their own (`db/processes.py`): a job runs
in another process on its own PostgreSQL connection, and comes back as its value or as its
exception, with the cause the routes read; a process that dies is replaced; closing ends
them all. The jobs are module-level values here, as in the routes, so that they pickle."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from fastapi import HTTPException
from sqlalchemy import func, literal, select
from sqlalchemy.sql.expression import Executable

from study_server.api.app import DB_PROCESS_PRELOAD
from study_server.db.processes import DatabaseProcesses, ProcessLost
from study_server.errors import ConflictError
from testkit.servers import database_processes

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class WhereRun:
    """The process and the PostgreSQL session a job ran in."""

    def __call__(self, db) -> tuple[int, int]:
        return os.getpid(), db.scalar(select(func.pg_backend_pid()))


@dataclass(frozen=True)
class Sleep:
    seconds: float
    answer: int

    def __call__(self, db) -> int:
        db.execute(select(func.pg_sleep(self.seconds)))
        return self.answer


@dataclass(frozen=True)
class Refuse:
    """As `labeling.AuditedWork` refuses: an HTTP error whose cause is the study's refusal."""

    def __call__(self, db) -> None:
        try:
            raise ConflictError("someone else holds these images", retry_after=3)
        except ConflictError as error:
            raise HTTPException(409, error.reason, headers=error.headers) from error


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("with a lock in it")
        self.lock = __import__("threading").Lock()


@dataclass(frozen=True)
class FailOddly:
    def __call__(self, db) -> None:
        raise Unpicklable()


@dataclass(frozen=True)
class Die:
    def __call__(self, db) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Echo:
    """A job that answers with what it was given, by way of the database."""

    value: int

    def __call__(self, db) -> int:
        return db.scalar(select(literal(self.value)))


def _within_a_minute(scenario):
    """A scenario that would hang if the processes lost track of a job fails instead."""

    async def bounded():
        return await asyncio.wait_for(scenario, 60)

    return asyncio.run(bounded())


def _explode() -> None:
    raise ValueError("this cannot be unpickled")


class UnreadableHere:
    """Pickles in the process, but cannot be unpickled by whoever receives it."""

    def __reduce__(self):
        return (_explode, ())


@dataclass(frozen=True)
class AnswerUnreadably:
    def __call__(self, db) -> UnreadableHere:
        return UnreadableHere()


def _pool(url: str, size: int) -> DatabaseProcesses:
    return DatabaseProcesses(url, size, preload=DB_PROCESS_PRELOAD)


@asynccontextmanager
async def _opened(url: str, size: int) -> AsyncIterator[DatabaseProcesses]:
    processes = _pool(url, size)
    await processes.open()
    try:
        yield processes
    finally:
        await processes.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_job_runs_in_another_process_on_a_connection_of_its_own(postgres_database_url):
    async def scenario() -> None:
        async with _opened(postgres_database_url, 2) as processes:
            runs = await asyncio.gather(*(processes.run(WhereRun()) for _ in range(6)))
            pids = {pid for pid, _ in runs}
            assert os.getpid() not in pids and pids <= set(processes.pids())
            assert len({backend for _, backend in runs}) <= 2  # one connection per process

    _within_a_minute(scenario())


def test_more_jobs_than_processes_wait_their_turn_and_each_gets_its_own_answer(
    postgres_database_url,
):
    async def scenario() -> None:
        async with _opened(postgres_database_url, 2) as processes:
            answers = await asyncio.gather(*(processes.run(Sleep(0.02, i)) for i in range(12)))
            assert answers == list(range(12))

    _within_a_minute(scenario())


def test_a_refusal_comes_back_as_itself_with_its_cause(postgres_database_url):
    """The accept route reads the cause (a changed consent text drops the cached page)."""

    async def scenario() -> None:
        async with _opened(postgres_database_url, 1) as processes:
            with pytest.raises(HTTPException) as refused:
                await processes.run(Refuse())
            assert refused.value.status_code == 409
            assert refused.value.detail == "someone else holds these images"
            assert refused.value.headers == {"Retry-After": "3"}
            cause = refused.value.__cause__
            assert isinstance(cause, ConflictError) and cause.retry_after == 3
            with pytest.raises(RuntimeError, match="Unpicklable: with a lock in it"):
                await processes.run(FailOddly())
            assert await processes.run(Echo(7)) == 7  # the process lives on

    _within_a_minute(scenario())


def test_a_job_or_an_answer_that_cannot_be_unpickled_fails_alone(postgres_database_url):
    async def scenario() -> None:
        async with _opened(postgres_database_url, 1) as processes:
            (pid,) = processes.pids()
            with pytest.raises(ValueError, match="cannot be unpickled"):
                await processes.run(UnreadableHere())  # in the process
            with pytest.raises(RuntimeError, match="cannot be unpickled"):
                await processes.run(AnswerUnreadably())  # here
            assert await processes.run(Echo(5)) == 5
            assert processes.pids() == [pid]  # the same process all along

    _within_a_minute(scenario())


def test_a_process_that_dies_fails_its_job_and_is_replaced(postgres_database_url):
    async def scenario() -> None:
        async with _opened(postgres_database_url, 1) as processes:
            (first,) = processes.pids()
            waiting = asyncio.ensure_future(processes.run(Echo(1)))  # queued behind the death
            with pytest.raises(ProcessLost, match=f"database process {first} ended"):
                await processes.run(Die())
            assert await waiting == 1  # ran in the replacement
            (second,) = processes.pids()
            assert second != first and not _alive(first)

    _within_a_minute(scenario())


def test_a_caller_that_goes_away_does_not_get_its_answer_given_to_another(
    postgres_database_url,
):
    async def scenario() -> None:
        async with _opened(postgres_database_url, 1) as processes:
            gone = asyncio.ensure_future(processes.run(Sleep(0.2, 1)))
            never_sent = asyncio.ensure_future(processes.run(Sleep(0.0, 2)))
            await asyncio.sleep(0.05)
            gone.cancel()
            never_sent.cancel()
            assert await processes.run(Echo(3)) == 3

    _within_a_minute(scenario())


def test_closing_ends_every_process_and_fails_the_jobs_still_waiting(postgres_database_url):
    async def scenario() -> None:
        processes = _pool(postgres_database_url, 2)
        await processes.open()
        pids = processes.pids()
        running = [asyncio.ensure_future(processes.run(Sleep(0.3, i))) for i in range(2)]
        waiting = asyncio.ensure_future(processes.run(Echo(9)))
        await asyncio.sleep(0.05)
        await processes.close()
        assert [await job for job in running] == [0, 1]  # the jobs in flight finish
        with pytest.raises(ProcessLost, match="stopping"):
            await waiting
        with pytest.raises(RuntimeError, match="not open"):
            await processes.run(Echo(1))
        return pids

    pids = _within_a_minute(scenario())
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_closing_while_a_lost_process_is_being_replaced_leaves_no_process(
    postgres_database_url,
):
    before = set(database_processes(os.getpid()))

    async def scenario() -> None:
        processes = _pool(postgres_database_url, 1)
        await processes.open()
        with pytest.raises(ProcessLost):
            await processes.run(Die())
        await processes.close()  # the replacement is under way
        assert processes.pids() == []

    _within_a_minute(scenario())
    deadline = time.monotonic() + 5
    while set(database_processes(os.getpid())) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(database_processes(os.getpid())) - before == set()


def test_a_database_that_cannot_be_reached_fails_the_start_with_the_reason():
    async def scenario() -> None:
        url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
        await _pool(url, 1).open()

    with pytest.raises(Exception, match="127.0.0.1"):
        _within_a_minute(scenario())


@dataclass(frozen=True)
class Readiness:
    """What a process did before its first job: which of the accept's and the submission's
    statements it has not rendered yet, and how many objects it froze out of the
    collector's sight."""

    def __call__(self, db) -> tuple[list[str], int]:
        from study_server import allocation, operations

        statements = {
            name: value
            for module in (allocation, operations)
            for name, value in vars(module).items()
            if isinstance(value, Executable)
        }
        cold = [name for name, statement in statements.items() if statement not in db.renderings]
        return cold, gc.get_freeze_count()


def test_a_process_is_ready_for_its_first_claim_before_it_says_so(postgres_database_url):
    """A study's first claims arrive together: the first job of a process found its
    statements rendered and its start-up objects frozen, instead of paying 50-90 ms for them
    while the claims behind it waited."""

    async def scenario() -> None:
        async with _opened(postgres_database_url, 1) as processes:
            cold, frozen = await processes.run(Readiness())
            assert cold == [] and frozen > 10_000

    _within_a_minute(scenario())
