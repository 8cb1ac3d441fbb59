"""The accept and the submission on a bare psycopg connection (`db.rendered`) do what they do
through SQLAlchemy: same parameters sent, same rows read back, same rows stored."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import bindparam, column, func, insert, select, text

from study_server.allocation import AllocationPolicy
from study_server.attention import PolicySpec
from study_server.db.models import (
    Allocation,
    Assignment,
    AttentionPolicy,
    Event,
    Label,
    LabelDraft,
    Study,
    Verification,
    Worker,
    WorkerSource,
)
from study_server.db.rendered import (
    MAX_RENDERINGS,
    DriverStatements,
    RenderedStatement,
    Renderings,
    defer,
    driver_statements,
    execute_together,
)
from study_server.db.session import create_db_engine, create_session_factory
from study_server.db.store import _INSERT_EVENT
from study_server.errors import ConflictError, ForbiddenError
from study_server.importer import Protocol
from study_server.operations import (
    _INSERT_ALLOCATION,
    _INSERT_LABELS,
    AcceptOutcome,
    Claimant,
    LabelInput,
    MTurkContext,
    WorkerRef,
    _retrying,
    accept,
    submit,
)
from testkit.studies import consent_sha256, import_study, register_hits

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = AllocationPolicy(timeout=timedelta(hours=1))
# Columns that differ between two people's identical work only by who and when.
_OWN = {"id", "worker_id", "assignment_id", "mturk_assignment_id", "hit_id", "source_address"}


@pytest.fixture
def engine(postgres_database_url):
    engine = create_db_engine(postgres_database_url)
    yield engine
    engine.dispose()


def _claim(n: int) -> Claimant:
    return Claimant(
        worker=WorkerRef(WorkerSource.mturk, f"W{n}"),
        mturk=MTurkContext(f"A{n}", f"HIT{n}", "https://workersandbox.mturk.com"),
        address=f"10.0.0.{n}",
    )


def _work(db, slug: str, consent: str, n: int, *, judged: bool = True) -> None:
    accepted = accept(
        session=db, study_slug=slug, claimant=_claim(n), consent_sha256=consent, now=NOW,
        policy=POLICY,
    )  # fmt: skip
    assert accepted.outcome == AcceptOutcome.allocated
    again = accept(
        session=db, study_slug=slug, claimant=_claim(n), consent_sha256=consent,
        now=NOW + timedelta(seconds=5), policy=POLICY,
    )  # fmt: skip
    assert again.outcome == AcceptOutcome.resumed
    assert again.assignment_public_id == accepted.assignment_public_id
    assert again.item_images == accepted.item_images and again.expires_at == accepted.expires_at
    labels = [LabelInput(p, p % 10, 900 + p) for p in range(len(accepted.item_images))]

    def send(given: list[LabelInput], minutes: int):
        return submit(
            session=db,
            assignment_public_id=accepted.assignment_public_id,
            worker=_claim(n).worker,
            mturk_assignment_id=f"A{n}",
            labels=given,
            now=NOW + timedelta(minutes=minutes),
        )

    stored = send(labels, 3)
    assert not stored.already_submitted and stored.num_labels == len(labels)
    assert stored.debrief is not None
    same = send(labels, 4)
    assert same.already_submitted and same.debrief == stored.debrief
    with pytest.raises(ConflictError):
        send([LabelInput(item.position, (item.label + 1) % 10, 1) for item in labels], 5)
    db.rollback()
    done = accept(
        session=db, study_slug=slug, claimant=_claim(n), consent_sha256=consent,
        now=NOW + timedelta(minutes=6), policy=POLICY,
    )  # fmt: skip
    assert done.outcome == AcceptOutcome.submitted and done.debrief == stored.debrief


def _stored(engine, worker: str) -> dict:
    """Everything a person's work wrote, without the ids and times that differ by who."""
    with create_session_factory(engine)() as session:
        allocation = session.execute(
            select(Allocation.__table__)
            .join(Worker, Worker.id == Allocation.worker_id)
            .where(Worker.external_id == worker)
        ).one()
        labels = session.execute(
            select(Label.position, Label.label, Label.response_ms)
            .where(Label.allocation_id == allocation.id)
            .order_by(Label.position)
        ).all()
        drafts = session.scalar(
            select(LabelDraft.id).where(LabelDraft.allocation_id == allocation.id)
        )
        events = session.execute(
            select(Event.kind, Event.detail).where(Event.worker_external_id == worker)
            .order_by(Event.id)
        ).all()  # fmt: skip
    row = {k: v for k, v in allocation._mapping.items() if k not in _OWN}
    return {
        "allocation": row,
        "labels": [tuple(label) for label in labels],
        "drafts": drafts,
        "events": [
            (
                kind,
                {
                    k: v
                    for k, v in detail.items()
                    if k not in ("ordinal", "hit_id", "mturk_assignment_id")
                },
            )
            for kind, detail in events
            if kind != "refused"
        ],
    }


def test_an_accept_and_a_submission_store_the_same_on_either_connection(
    engine, postgres_database_url, small_bundle
):
    """A judging policy, a resumed hold, a resubmission, a refused change, a second accept:
    the driver connection leaves the rows the Session leaves, JSON and enums included."""
    protocol = Protocol(policy=PolicySpec(0.5, 100), policy_origin="import")
    study = import_study(
        postgres_database_url, small_bundle, items_per_assignment=5, protocol=protocol
    )
    register_hits(postgres_database_url, study.slug, ["HIT1", "HIT2"])
    consent = consent_sha256(postgres_database_url, study.slug)
    with create_session_factory(engine)() as session:
        _work(session, study.slug, consent, 1)
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        assert isinstance(db, DriverStatements)
        _work(db, study.slug, consent, 2)
    through_session, through_driver = _stored(engine, "W1"), _stored(engine, "W2")
    assert through_driver == through_session
    assert through_driver["allocation"]["attention_detail"]["policy_version"] == 1
    assert through_driver["allocation"]["verification"] == Verification.unverified
    assert through_driver["drafts"] is None
    assert [kind for kind, _ in through_driver["events"]] == ["allocated", "submitted"]


def test_refusals_on_the_driver_connection_say_what_the_session_says(
    engine, postgres_database_url, small_bundle
):
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    register_hits(postgres_database_url, study.slug, ["HIT1"])
    consent = consent_sha256(postgres_database_url, study.slug)
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        accepted = accept(
            session=db, study_slug=study.slug, claimant=_claim(1), consent_sha256=consent,
            now=NOW, policy=POLICY,
        )  # fmt: skip
        with pytest.raises(ForbiddenError, match="belongs to another worker"):
            accept(
                session=db, study_slug=study.slug,
                claimant=Claimant(WorkerRef(WorkerSource.mturk, "W9"), _claim(1).mturk, None),
                consent_sha256=consent, now=NOW, policy=POLICY,
            )  # fmt: skip
        db.rollback()
        with pytest.raises(ForbiddenError, match="not allocated to you"):
            submit(
                session=db, assignment_public_id=accepted.assignment_public_id,
                worker=WorkerRef(WorkerSource.mturk, "W9"), mturk_assignment_id="A1",
                labels=[], now=NOW,
            )  # fmt: skip
        db.rollback()
        with pytest.raises(Exception, match="consent text this study does not have"):
            accept(
                session=db, study_slug=study.slug, claimant=_claim(2), consent_sha256="0" * 64,
                now=NOW, policy=POLICY,
            )  # fmt: skip
        db.rollback()


def test_rows_come_back_converted_as_sqlalchemy_converts_them(engine, postgres_database_url):
    """Enums, aware UTC times, JSON and floats: a driver row equals SQLAlchemy's row."""
    statement = select(
        Event.kind, Event.detail, Event.created_at, AttentionPolicy.min_catch_accuracy
    ).outerjoin(AttentionPolicy, AttentionPolicy.id == Event.id)
    with engine.begin() as connection:
        connection.execute(insert(Event).values(kind="k", detail={"a": [1, None]}))
        connection.execute(
            select(Allocation.status).where(Allocation.id.in_([1, 2]))
        )  # compiles an expanding IN, as below
        expected = connection.execute(statement).all()
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        got = db.execute(statement).all()
        assert got == [tuple(row) for row in expected]
        assert got[0].created_at.tzinfo is not None and got[0].detail == {"a": [1, None]}
        ids = select(Event.id).where(Event.id.in_(bindparam("ids", expanding=True)))
        assert db.scalars(ids, {"ids": [got and 1, 999]}).all() == [1]
        assert db.scalars(ids, {"ids": []}).all() == []
        # Beside a list, every other value is converted too: a naive time is refused, as
        # through SQLAlchemy, not read in the session's time zone.
        since = ids.where(Event.created_at >= bindparam("since"))
        with pytest.raises(ValueError, match="naive datetime"):
            db.scalars(since, {"ids": [1], "since": datetime(2026, 1, 1)})
        assert db.scalars(since, {"ids": [1], "since": NOW - timedelta(days=400)}).all() == [1]
        db.rollback()


def test_a_statement_needing_python_side_defaults_is_refused(engine):
    """`Event.detail` has a Python default SQLAlchemy fills in; the driver would not."""
    with pytest.raises(ValueError, match="Python-side defaults"):
        RenderedStatement(insert(Event.__table__).values(kind=bindparam("kind")), engine.dialect)


def test_statements_built_per_call_are_not_kept(engine):
    renderings = Renderings(engine.dialect)
    for n in range(MAX_RENDERINGS + 5):
        renderings(select(Event.id).where(Event.id == n))
    assert len(renderings._rendered) == MAX_RENDERINGS


def test_after_a_database_restart_one_use_fails_and_the_pool_is_renewed(engine):
    """Every pooled connection is broken once the database ended their sessions: the first
    use fails (whether its statement ran cannot be told), the next gets a fresh one."""
    renderings = Renderings(engine.dialect)
    pids = select(func.pg_backend_pid())
    held = [engine.raw_connection() for _ in range(3)]  # three connections in the pool
    for connection in held:
        connection.close()
    with engine.connect() as admin:
        admin.execute(
            select(func.pg_terminate_backend(column("pid"), 5000)).select_from(
                text("pg_stat_activity")
            ).where(text("datname = current_database() AND pid <> pg_backend_pid()"))
        )  # fmt: skip
    with pytest.raises(psycopg.OperationalError):
        with driver_statements(engine, renderings) as db:
            db.scalar(pids, {})
    with driver_statements(engine, renderings) as db:
        assert db.scalar(pids, {}) > 0
        db.rollback()
    assert engine.pool.checkedin() <= 1  # the broken idle ones were closed, not kept


def test_inserts_nobody_reads_back_return_nothing(engine):
    """An event, a submission's labels, a hold: compiled once for PostgreSQL an INSERT would return
    its new keys (every label's, in an insert of many), which nothing reads."""
    for statement in (_INSERT_EVENT, _INSERT_LABELS, _INSERT_ALLOCATION):
        assert "RETURNING" not in RenderedStatement(statement, engine.dialect).sql


@contextmanager
def _waits(db: DriverStatements) -> Iterator[list[int]]:
    """How many times the connection waited for PostgreSQL inside the block (libpq's trace
    of the protocol: each turn from the client's messages to the server's answers)."""
    counted: list[int] = []
    with tempfile.TemporaryFile() as trace:
        db.connection.pgconn.trace(trace.fileno())
        db.connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield counted
        finally:
            db.connection.pgconn.untrace()
        trace.seek(0)
        senders = [line[:1] for line in trace.read().decode().splitlines() if line]
    counted.append(sum(1 for pair in itertools.pairwise(senders) if pair == ("F", "B")))


def test_an_accept_and_a_submission_wait_for_postgresql_a_few_times(
    engine, postgres_database_url, small_bundle
):
    """Statement by statement, a new hold was 15 round trips and a submission 12. Sent
    together (`execute_together`, `defer`): the BEGIN psycopg sends alone, the study, every
    check's question, the pick from the pool, then the writes, the images and the COMMIT.
    The second person's count: by then every statement is prepared on the connection."""
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    register_hits(postgres_database_url, study.slug, ["HIT1", "HIT2"])
    consent = consent_sha256(postgres_database_url, study.slug)
    waits = []
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        for n in (1, 2):
            with _waits(db) as accepting:
                accepted = accept(
                    session=db, study_slug=study.slug, claimant=_claim(n), consent_sha256=consent,
                    now=NOW, policy=POLICY,
                )  # fmt: skip
            with _waits(db) as resuming:
                again = accept(
                    session=db, study_slug=study.slug, claimant=_claim(n), consent_sha256=consent,
                    now=NOW, policy=POLICY,
                )  # fmt: skip
            with _waits(db) as submitting:
                stored = submit(
                    session=db, assignment_public_id=accepted.assignment_public_id,
                    worker=_claim(n).worker, mturk_assignment_id=f"A{n}",
                    labels=[LabelInput(p, 1, 900) for p in range(len(accepted.item_images))],
                    now=NOW,
                )  # fmt: skip
            assert again.outcome == AcceptOutcome.resumed and stored.num_labels == 5
            waits.append((*accepting, *resuming, *submitting))
    assert waits[1] == (5, 4, 4)


# A label of an allocation that does not exist: refused by its foreign key.
_LABEL_KEYS = ("allocation_id", "assignment_id", "stimulus_id", "worker_id", "position")
_NO_SUCH_ALLOCATION = {**dict.fromkeys(_LABEL_KEYS, 0), "label": 1, "response_ms": 1}
_AN_EVENT = {
    "study_id": None, "kind": "k", "worker_external_id": None, "assignment_id": None,
    "detail": {},
}  # fmt: skip


def test_a_deferred_write_goes_with_the_next_statement_and_a_rollback_drops_it(engine):
    events = select(func.count()).select_from(Event)
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        before = db.scalar(events)
        db.rollback()
        with _waits(db) as waited:
            defer(db, _INSERT_EVENT, _AN_EVENT)
            seen = db.scalar(events)
        assert seen == before + 1 and waited == [2]  # BEGIN, then the insert with the count
        defer(db, _INSERT_EVENT, _AN_EVENT)
        db.rollback()  # the second was never sent; the first is rolled back
        assert db.scalar(events) == before
        defer(db, _INSERT_EVENT, _AN_EVENT)
        with _waits(db) as waited:
            db.commit()
        assert waited == [1]  # the insert and the COMMIT together
        assert db.scalar(events) == before + 1
        db.rollback()


def test_a_deferred_write_that_fails_fails_the_next_round_trip(engine):
    """Its error is raised there, and nothing after it ran: the count is not answered."""
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        defer(db, _INSERT_LABELS, _NO_SUCH_ALLOCATION)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            execute_together(db, [(select(func.count()).select_from(Event), {})])
        assert db.connection.info.transaction_status == pq.TransactionStatus.INERROR
        db.rollback()


def test_questions_sent_together_answer_as_one_at_a_time(
    engine, postgres_database_url, small_bundle
):
    """On a driver connection in one round trip, on a Session one after another: the same
    rows, in the order asked, an empty answer included."""
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    questions = [
        (select(Study.id, Study.slug).where(Study.slug == bindparam("slug")), {"slug": study.slug}),
        (select(Study.id).where(Study.slug == bindparam("slug")), {"slug": "nobody"}),
        (select(func.count()).select_from(Assignment), {}),
    ]
    with create_session_factory(engine)() as session:
        one_at_a_time = [answer.all() for answer in execute_together(session, questions)]
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        with _waits(db) as waited:
            together = [answer.all() for answer in execute_together(db, questions)]
        db.rollback()
    assert together == [[tuple(row) for row in rows] for rows in one_at_a_time]
    assert together[1] == [] and waited == [2]  # psycopg's BEGIN alone, then the three


def test_a_person_back_after_their_own_deadline_gets_a_new_hold_on_either_connection(
    engine, postgres_database_url, small_bundle
):
    """Their hold is read in the same round trip as the overdue ones, before this very
    accept ends it: it must count as ended (a new hold, its saved labels gone), not resume."""
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    register_hits(postgres_database_url, study.slug, ["HIT1", "HIT2"])
    consent = consent_sha256(postgres_database_url, study.slug)
    late = NOW + POLICY.timeout + timedelta(seconds=1)
    connections = {
        1: lambda: create_session_factory(engine)(),
        2: lambda: driver_statements(engine, Renderings(engine.dialect)),
    }
    for n, connect in connections.items():
        with connect() as db:
            first = accept(
                session=db, study_slug=study.slug, claimant=_claim(n), consent_sha256=consent,
                now=NOW, policy=POLICY,
            )  # fmt: skip
        with engine.begin() as connection:
            held = connection.scalar(
                select(Allocation.id)
                .join(Worker, Worker.id == Allocation.worker_id)
                .where(Worker.external_id == f"W{n}")
            )
            connection.execute(
                insert(LabelDraft).values(
                    allocation_id=held, position=0, label=1, response_ms=900, saved_at=NOW
                )
            )
        with connect() as db:
            back = accept(
                session=db, study_slug=study.slug, claimant=_claim(n), consent_sha256=consent,
                now=late, policy=POLICY,
            )  # fmt: skip
        assert back.outcome == AcceptOutcome.allocated and back.saved == ()
        assert back.expires_at == late + POLICY.timeout > first.expires_at
        stored = _stored(engine, f"W{n}")
        assert stored["drafts"] is None and stored["allocation"]["status"].value == "active"
        assert [d["again_after_expiry"] for k, d in stored["events"] if k == "allocated"] == [
            False,
            True,
        ]


def test_a_deferred_write_that_fails_at_the_commit_leaves_the_connection_usable(engine):
    """The COMMIT sent after it is skipped, the transaction is left failed for the caller's
    rollback, and a failure worth retrying runs the whole operation again (`_retrying`)."""
    conflict = text("DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = '40001'; END $$")
    events = select(func.count()).select_from(Event)
    with driver_statements(engine, Renderings(engine.dialect)) as db:
        defer(db, _INSERT_LABELS, _NO_SUCH_ALLOCATION)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            db.commit()
        assert db.connection.info.transaction_status == pq.TransactionStatus.INERROR
        db.rollback()
        count = db.scalar(events)
        db.rollback()
        attempts: list[int] = []

        def operation() -> int:
            attempts.append(1)
            defer(db, _INSERT_EVENT, {**_AN_EVENT, "kind": f"attempt {len(attempts)}"})
            if len(attempts) == 1:
                defer(db, conflict)
            found = db.scalar(events)
            db.commit()
            return found

        assert _retrying(db, operation) == count + 1 and len(attempts) == 2
        kinds = db.scalars(select(Event.kind).order_by(Event.id.desc()).limit(1)).all()
        assert kinds == ["attempt 2"]  # the first attempt's event was rolled back
        db.rollback()


def test_an_accept_leaves_an_overdue_hold_whose_assignment_another_transaction_holds(
    engine, postgres_database_url, small_bundle
):
    """A submission locks its assignment, then the person's hold; an accept locks the
    person's hold before it ends overdue ones. So the accept must not wait for the
    assignment of an overdue hold (a submission may hold it, waiting for the accept's
    locks: a deadlock): that hold is left to a later accept, which ends it."""
    study = import_study(postgres_database_url, small_bundle, items_per_assignment=5)
    register_hits(postgres_database_url, study.slug, ["HIT1", "HIT2", "HIT3"])
    consent = consent_sha256(postgres_database_url, study.slug)
    late = NOW + POLICY.timeout + timedelta(seconds=1)
    renderings = Renderings(engine.dialect)

    def take(n: int, at: datetime):
        with driver_statements(engine, renderings) as db:
            db.connection.execute("SET lock_timeout = '5s'")  # fail, rather than hang
            return accept(
                session=db, study_slug=study.slug, claimant=_claim(n), consent_sha256=consent,
                now=at, policy=POLICY,
            )  # fmt: skip

    first = take(1, NOW)
    status_of_1 = (
        select(Allocation.status)
        .join(Worker, Worker.id == Allocation.worker_id)
        .where(Worker.external_id == "W1")
    )
    with engine.connect() as submitting:  # holds the overdue hold's assignment meanwhile
        submitting.execute(
            select(Assignment.id)
            .where(Assignment.public_id == first.assignment_public_id)
            .with_for_update()
        )
        assert take(2, late).outcome == AcceptOutcome.allocated
        with engine.connect() as reading:
            assert reading.scalar(status_of_1).value == "active"  # left to a later accept
        submitting.rollback()
    assert take(3, late).outcome == AcceptOutcome.allocated
    with engine.connect() as reading:
        assert reading.scalar(status_of_1).value == "expired"
