"""Labels saved together go as one statement (PostgreSQL: `loop_statements.LoopBatch` with
`operations.save_drafts_statement`), and every save still gets its own answer under the
same rules as one saved alone; over HTTP, concurrent saves keep every refusal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy import select

from study_server.db.loop_statements import LoopBatch, LoopDatabase
from study_server.db.models import Allocation, LabelDraft, Worker, WorkerSource
from study_server.db.session import create_db_engine
from study_server.operations import (
    LabelInput,
    WorkerRef,
    draft_values,
    save_drafts_statement,
)
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study, register_hits
from tests.server.flow import mturk_accept


@pytest.fixture
def postgres_server(postgres_database_url, small_bundle, live_server_factory):
    """The study server on PostgreSQL, where saves go in batches."""
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    register_hits(postgres_database_url, study.slug, ["HIT0", "HIT1", "HIT2"])
    return live_server_factory(make_settings(postgres_database_url))


def _drafts(url: str) -> dict[tuple[str, int], int]:
    session = session_for(url)
    try:
        rows = session.execute(
            select(Worker.external_id, LabelDraft.position, LabelDraft.label)
            .join(Allocation, Allocation.id == LabelDraft.allocation_id)
            .join(Worker, Worker.id == Allocation.worker_id)
        )
        return {(worker, position): label for worker, position, label in rows}
    finally:
        session.close()


def _values(accepted: dict, worker: str, mturk: str, position: int, label: int) -> dict:
    return draft_values(
        assignment_public_id=accepted["assignment"],
        worker=WorkerRef(WorkerSource.mturk, worker),
        mturk_assignment_id=mturk,
        item=LabelInput(position, label, 800),
        now=datetime.now(UTC),
    )


def _accept_two(live_server) -> tuple[dict, dict]:
    with live_server.client() as web:
        first = mturk_accept(web, "ours-fc", worker="AW1", assignment="A1", hit="HIT0")
        second = mturk_accept(web, "ours-fc", worker="AW2", assignment="A2", hit="HIT1")
    return first.json(), second.json()


def _run_batch(url: str, runs: list[dict[str, Any]], *, cancel: int | None = None):
    """Every run started in one turn of the loop; the statements the database was sent."""
    engine = create_db_engine(url)
    sent: list[str] = []

    async def go() -> list[Any]:
        database = LoopDatabase(engine, size=2)
        run_rows = database.rows

        async def rows(statement, values, **options):
            sent.append(database.renderings(statement).sql)
            return await run_rows(statement, values, **options)

        database.rows = rows  # type: ignore[method-assign]
        await database.open()
        try:
            batch = LoopBatch(database, save_drafts_statement())
            tasks = [asyncio.ensure_future(batch.run(values)) for values in runs]
            if cancel is not None:
                await asyncio.sleep(0)  # it has joined the batch, then its request went away
                tasks[cancel].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await database.close()

    try:
        return asyncio.run(go()), sent
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_saves_that_arrive_together_are_one_statement_with_an_answer_each(postgres_server):
    url = postgres_server.settings.database_url
    mine, theirs = _accept_two(postgres_server)
    runs = {
        "first label": _values(mine, "AW1", "A1", 0, 3),
        "second label": _values(mine, "AW1", "A1", 1, 4),
        "another person's label": _values(theirs, "AW2", "A2", 0, 5),
        "a correction of the first": _values(mine, "AW1", "A1", 0, 6),
        "on someone else's assignment": _values(mine, "AW2", "A2", 2, 1),
        "under another MTurk assignment": _values(mine, "AW1", "A9", 2, 1),
        "a label outside the classes": _values(mine, "AW1", "A1", 2, 10),
        "a position outside the assignment": _values(mine, "AW1", "A1", 99, 1),
    }
    answers, sent = _run_batch(url, list(runs.values()))
    assert len(sent) == 1 and "unnest" in sent[0]
    assert dict(zip(runs, answers, strict=True)) == {
        "first label": True,
        "second label": True,
        "another person's label": True,
        "a correction of the first": True,  # the later of the two went; both were answered
        "on someone else's assignment": False,
        "under another MTurk assignment": False,
        "a label outside the classes": False,
        "a position outside the assignment": False,
    }
    assert _drafts(url) == {("AW1", 0): 6, ("AW1", 1): 4, ("AW2", 0): 5}


@pytest.mark.postgres
def test_a_correction_in_the_same_batch_is_answered_as_if_each_ran_in_turn(postgres_server):
    url = postgres_server.settings.database_url
    mine, theirs = _accept_two(postgres_server)
    runs = [
        _values(mine, "AW1", "A1", 0, 3),
        _values(mine, "AW1", "A1", 0, 10),  # a correction the rules refuse: the 3 stays
        _values(theirs, "AW2", "A2", 1, 10),
        _values(theirs, "AW2", "A2", 1, 4),  # refused, then a good one: the 4 is saved
    ]
    answers, sent = _run_batch(url, runs)
    assert len(sent) == 1
    assert answers == [True, False, False, True]
    assert _drafts(url) == {("AW1", 0): 3, ("AW2", 1): 4}


@pytest.mark.postgres
def test_a_run_the_database_or_driver_refuses_fails_alone(postgres_server):
    """The batch goes again one run at a time: only the bad run fails, with its own error."""
    url = postgres_server.settings.database_url
    mine, theirs = _accept_two(postgres_server)
    out_of_range = _values(mine, "AW1", "A1", 1, 2**31)  # past PostgreSQL's integer
    naive = {**_values(mine, "AW1", "A1", 2, 2), "now": datetime(2026, 11, 29, 12, 0)}
    runs = [
        _values(mine, "AW1", "A1", 0, 3),
        out_of_range,
        naive,
        _values(theirs, "AW2", "A2", 0, 5),
    ]
    answers, sent = _run_batch(url, runs)
    assert answers[0] is True and answers[3] is True
    assert isinstance(answers[1], NumericValueOutOfRange)
    assert isinstance(answers[2], ValueError) and "naive datetime" in str(answers[2])
    assert len(sent) == 1 + len(runs)  # the batch, then each run alone
    assert _drafts(url) == {("AW1", 0): 3, ("AW2", 0): 5}


@pytest.mark.postgres
def test_a_save_whose_request_went_away_leaves_the_others_answered(postgres_server):
    url = postgres_server.settings.database_url
    mine, theirs = _accept_two(postgres_server)
    runs = [_values(mine, "AW1", "A1", 0, 3), _values(theirs, "AW2", "A2", 0, 5)]
    answers, sent = _run_batch(url, runs, cancel=0)
    assert isinstance(answers[0], asyncio.CancelledError) and answers[1] is True
    assert len(sent) == 1
    # It had joined the batch before its request went away: stored, as a save already
    # sent to the database would be.
    assert _drafts(url) == {("AW1", 0): 3, ("AW2", 0): 5}


def test_concurrent_saves_over_http_each_get_their_own_answer(live_server):
    """On both backends: 3 people's labels sent at once, with forgeries among them."""
    url = live_server.settings.database_url
    with live_server.client() as web:
        accepted = {
            worker: mturk_accept(
                web, "ours-fc", worker=worker, assignment=f"A-{worker}", hit=f"HIT{i}"
            ).json()
            for i, worker in enumerate(["AW1", "AW2", "AW3"])
        }

    async def save(web: httpx.AsyncClient, owner: str, sender: str, position: int, label: int):
        body = {
            "worker_id": sender,
            "mturk_assignment_id": f"A-{sender}",
            "label": label,
            "response_ms": 700,
        }
        answer = await web.put(f"{accepted[owner]['label_url_prefix']}{position}", json=body)
        return answer.status_code

    async def go() -> tuple[list[int], list[int]]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as web:
            valid = [
                save(web, worker, worker, position, (position + i) % 10)
                for i, worker in enumerate(accepted)
                for position in range(5)
            ]
            refused = [
                save(web, "AW1", "AW2", 4, 9),  # someone else's assignment
                save(web, "AW3", "AW1", 0, 9),
                save(web, "AW2", "AW2", 1, 2**31),  # not a class, nor an integer the database has
                save(web, "AW2", "AW2", 2, 10),  # not one of the 10 classes
            ]
            statuses = await asyncio.gather(*valid, *refused)
        return statuses[: len(valid)], statuses[len(valid) :]

    valid, refused = asyncio.run(go())
    assert valid == [200] * 15
    assert refused == [403, 403, 422, 422]
    assert _drafts(url) == {
        (worker, position): (position + i) % 10
        for i, worker in enumerate(accepted)
        for position in range(5)
    }
