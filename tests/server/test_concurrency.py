"""Many workers accept and submit at the same moment, against `study-server serve` (uvicorn in
its own process) on a loopback port: every label is stored exactly once and no assignment
ever goes to two workers. On PostgreSQL (row locks) and SQLite (one writer at a time)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from study_server.db.models import Allocation, AllocationStatus, Label
from study_server.db.session import is_sqlite
from testkit.databases import session_for
from testkit.servers import database_processes, serve_process
from testkit.studies import import_study, register_hits
from tests.server.flow import mturk_accept, submit

WORKERS = 48
ASSIGNMENTS = 32
ITEMS = 5


def _expected_labels(worker: int) -> list[int]:
    return [(worker * 7 + position) % 10 for position in range(ITEMS)]


def test_simultaneous_workers_get_distinct_assignments_and_labels_are_stored_once(
    database_url, make_bundle
):
    seen = _simultaneous_accepts_and_submits(database_url, make_bundle, server_processes=1)
    # PostgreSQL: accepts and submits in the server's 2 database processes; SQLite: its threads
    assert len(seen) == (0 if is_sqlite(database_url) else 2), seen


@pytest.mark.postgres
def test_the_same_holds_across_two_server_processes_each_with_its_database_processes(
    postgres_database_url, make_bundle
):
    """`serve --workers 2`: two event loops, each with its own database processes
    (`ADVCRITIC_DB_PROCESSES`, 2), all four taking accepts and submits for the same study."""
    seen = _simultaneous_accepts_and_submits(postgres_database_url, make_bundle, server_processes=2)
    assert len(seen) == 2 * 2, seen


def _simultaneous_accepts_and_submits(
    database_url: str, make_bundle, *, server_processes: int
) -> list[int]:
    """Returns the server's database processes, as seen while it ran."""
    study = import_study(
        database_url, make_bundle(n_adversarial=ASSIGNMENTS * ITEMS), items_per_assignment=ITEMS
    )
    register_hits(database_url, study.slug, [f"HIT{i}" for i in range(ASSIGNMENTS)])
    barrier = threading.Barrier(WORKERS)
    outcomes: dict[int, tuple[int, str | None]] = {}

    def work(worker: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            # Every worker double-clicks: two accepts at once for the same MTurk assignment.
            with ThreadPoolExecutor(2) as pair:
                answers = list(
                    pair.map(
                        lambda _: mturk_accept(
                            client,
                            study.slug,
                            worker=f"W{worker}",
                            assignment=f"A{worker}",
                            hit=f"HIT{worker % ASSIGNMENTS}",
                        ),
                        range(2),
                    )
                )
            codes = sorted(a.status_code for a in answers)
            if codes[0] != 200:
                assert codes == [409, 409], [a.text for a in answers]
                outcomes[worker] = (409, None)
                return
            granted = {a.json()["assignment"] for a in answers if a.status_code == 200}
            assert len(granted) == 1, "a double-click must not hold two assignments"
            accepted = next(a.json() for a in answers if a.status_code == 200)
            labels = _expected_labels(worker)
            with ThreadPoolExecutor(
                2
            ) as pair:  # and submits twice at once (a retry racing the first)
                results = list(
                    pair.map(
                        lambda _: submit(
                            client,
                            accepted,
                            worker=f"W{worker}",
                            mturk_assignment=f"A{worker}",
                            labels=labels,
                        ),
                        range(2),
                    )
                )
            statuses = sorted(r.json().get("status", r.text) for r in results)
            assert statuses == ["already_submitted", "stored"], statuses
            outcomes[worker] = (200, accepted["assignment"])

    with (
        serve_process(database_url, workers=server_processes) as server,
        ThreadPoolExecutor(WORKERS) as pool,
    ):
        list(pool.map(lambda w: work(w, server.url), range(WORKERS)))
        seen = database_processes(server.process.pid)

    winners = {w: a for w, (code, a) in outcomes.items() if code == 200}
    assert len(outcomes) == WORKERS
    assert len(winners) == ASSIGNMENTS and len(set(winners.values())) == ASSIGNMENTS
    session = session_for(database_url)
    try:
        allocations = session.scalars(select(Allocation)).all()
        assert len(allocations) == ASSIGNMENTS
        assert all(a.status == AllocationStatus.submitted for a in allocations)
        assert len({a.assignment_id for a in allocations}) == ASSIGNMENTS
        assert session.scalar(select(func.count()).select_from(Label)) == ASSIGNMENTS * ITEMS
        per_stimulus = session.execute(
            select(Label.stimulus_id, func.count()).group_by(Label.stimulus_id)
        ).all()
        assert len(per_stimulus) == ASSIGNMENTS * ITEMS and {n for _, n in per_stimulus} == {1}
        for allocation in allocations:
            worker = int(allocation.mturk_assignment_id[1:])
            stored = session.scalars(
                select(Label.label)
                .where(Label.allocation_id == allocation.id)
                .order_by(Label.position)
            ).all()
            assert stored == _expected_labels(worker)
    finally:
        session.close()
    return seen
