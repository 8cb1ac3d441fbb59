"""Nobody can take the study's images away (issue 12, item 3), over HTTP against uvicorn.

A forger knows the HIT page's URL and the HIT ids (any worker sees them) and invents
workerId/assignmentId values; MTurk signs none of them. The properties, each tested here:

- one source address holds at most `holds_per_address` holds of a study (429, Retry-After),
  and a lab behind one NAT address is not stopped by it;
- a HIT id draws at most `assignments_per_hit` assignments from the pool; further claims
  share the HIT's images;
- a hold never grows: accepting again keeps its deadline, and it never outlasts the HIT's
  MTurk assignment duration;
- many concurrent forging clients, from many addresses, cannot leave a worker who really
  accepted a HIT without images;
- rate limits answer 429 with Retry-After, written once to the audit;
- forwarded headers from a proxy the server was not told about are refused, not believed.

Clients get their own loopback source addresses (127.0.x.y), as many people would have.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from study_server import allocation as allocation_rules
from study_server.allocation import AllocationPolicy
from study_server.db.models import Allocation, AllocationStatus, Event, MTurkHit, WorkerSource
from study_server.db.rendered import Rows
from study_server.errors import ConflictError
from study_server.operations import Claimant, MTurkContext, WorkerRef, accept
from testkit.databases import session_for
from testkit.servers import MTURK_TEST_SUBMIT_HOST, make_settings, serve_process
from testkit.studies import consent_sha256 as stored_consent_sha256
from testkit.studies import import_study, invite, register_hits
from tests.server.flow import consent_sha256, lab_accept


def client_from(url: str, address: str) -> httpx.Client:
    """An HTTP client whose requests come from `address` (a loopback address of its own)."""
    return httpx.Client(
        base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=address)
    )


def claim(client: httpx.Client, slug: str, worker: str, hit: str, assignment: str | None = None):
    return client.post(
        f"/api/studies/{slug}/accept",
        json={
            "worker_id": worker,
            "mturk": {
                "assignment_id": assignment or f"A-{worker}",
                "hit_id": hit,
                "turk_submit_to": MTURK_TEST_SUBMIT_HOST,
            },
            "consent_sha256": _consent(str(client.base_url), slug),
        },
    )


@functools.cache
def _consent(url: str, slug: str) -> str:
    """Read by the host (never limited), once: only the claims count against an address."""
    with httpx.Client(base_url=url) as host:
        return consent_sha256(host, slug)


def _limits(**values: Any) -> dict[str, Any]:
    base = {"holds_per_address": 3, "assignments_per_hit": 3, "share_after_s": 60}
    return {**base, **values}


@pytest.fixture
def study_of(database_url, make_bundle):
    """`study_of(assignments)`: a study of that many assignments of 5, one HIT each."""

    def make(assignments: int, items: int = 5):
        study = import_study(
            database_url, make_bundle(n_adversarial=assignments * items), items_per_assignment=items
        )
        register_hits(database_url, study.slug, [f"HIT{i}" for i in range(assignments)])
        return study

    return make


def test_one_address_holds_at_most_its_share_and_the_hold_never_grows(
    database_url, study_of, live_server_factory
):
    study = study_of(6)
    server = live_server_factory(make_settings(database_url, limits=_limits(holds_per_address=2)))
    with (
        client_from(server.url, "127.0.0.2") as forger,
        client_from(server.url, "127.0.0.3") as other,
    ):
        first = claim(forger, study.slug, "F1", "HIT0")
        second = claim(forger, study.slug, "F2", "HIT1")
        assert first.status_code == second.status_code == 200
        before = _snapshot(database_url)
        third = claim(forger, study.slug, "F3", "HIT2")
        assert third.status_code == 429, third.text
        wait = int(third.headers["retry-after"])
        assert 0 < wait <= 20 * 60 and "at most 2 at once" in third.json()["detail"]
        assert _snapshot(database_url) == before  # nothing stored by the refusal
        assert claim(other, study.slug, "W9", "HIT3").status_code == 200  # others are not held up
        again = claim(forger, study.slug, "F1", "HIT0")  # coming back does not extend the hold
        assert again.json()["outcome"] == "resumed"
        assert again.json()["expires_at"] == first.json()["expires_at"]
    assert _refusals(database_url, 429) == 1


def test_a_lab_behind_one_nat_address_is_not_stopped(database_url, study_of, live_server_factory):
    study = study_of(6)
    codes = invite(database_url, study.slug, 6)
    server = live_server_factory(make_settings(database_url, limits=_limits(holds_per_address=2)))
    with client_from(server.url, "127.0.0.4") as lab:  # everyone shares the lab's address
        answers = [lab_accept(lab, study.slug, code=c) for c in codes]
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["assignment"] for a in answers}) == 6


def test_a_hit_draws_at_most_its_share_and_further_claims_share_its_images(
    database_url, study_of, live_server_factory
):
    study = study_of(6)
    server = live_server_factory(
        make_settings(database_url, limits=_limits(assignments_per_hit=2, share_after_s=0))
    )
    answers = []
    for n in range(4):
        with client_from(server.url, f"127.0.1.{n + 1}") as client:
            answers.append(claim(client, study.slug, f"F{n}", "HIT0").json())
    assert [a["outcome"] for a in answers] == ["allocated", "allocated", "shared", "shared"]
    drawn = {a["assignment"] for a in answers}
    assert len(drawn) == 2  # HIT0 holds two assignments' images, however many claim it
    session = session_for(database_url)
    try:
        claims = session.scalar(
            select(func.count()).select_from(Allocation).where(Allocation.hit_id == "HIT0")
        )
    finally:
        session.close()
    assert claims == 4


def test_a_hold_never_outlasts_the_hits_assignment_duration(
    database_url, study_of, live_server_factory
):
    study = study_of(3)
    session = session_for(database_url)
    try:
        session.execute(
            update(MTurkHit).where(MTurkHit.hit_id == "HIT0").values(assignment_duration_s=300)
        )
        session.commit()
    finally:
        session.close()
    server = live_server_factory(make_settings(database_url, allocation_timeout_s=20 * 60))
    with server.client() as client:
        short = claim(client, study.slug, "W0", "HIT0").json()
        usual = claim(client, study.slug, "W1", "HIT1").json()
    now = datetime.now(UTC)
    assert datetime.fromisoformat(short["expires_at"]) - now <= timedelta(seconds=300)
    assert datetime.fromisoformat(usual["expires_at"]) - now > timedelta(minutes=19)


def test_rate_limits_answer_429_with_retry_after_and_are_audited_once(
    database_url, study_of, live_server_factory
):
    study = study_of(6)
    server = live_server_factory(
        make_settings(
            database_url,
            limits=_limits(holds_per_address=0, accepts_per_minute=2, requests_per_minute=6),
        )
    )
    page = f"/hit/{study.slug}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=HIT0"
    with client_from(server.url, "127.0.0.5") as client:
        accepts = [claim(client, study.slug, f"F{n}", f"HIT{n}") for n in range(3)]
        pages = [client.get(page) for _ in range(4)]
    with server.client() as host:  # the host itself (127.0.0.1) is never limited
        assert all(host.get(page).status_code == 200 for _ in range(10))
    assert [a.status_code for a in accepts] == [200, 200, 429]
    assert 1 <= int(accepts[2].headers["retry-after"]) <= 60
    assert "too many requests" in accepts[2].json()["detail"]
    assert [p.status_code for p in pages] == [200, 200, 200, 429]
    assert pages[3].headers["retry-after"] and "text/html" in pages[3].headers["content-type"]
    session = session_for(database_url)
    try:
        audited = session.scalars(select(Event.detail).where(Event.kind == "rate_limited")).all()
    finally:
        session.close()
    assert sorted(d["bucket"] for d in audited) == ["accept", "request"]  # once per bucket


def test_forwarded_headers_from_a_proxy_nobody_trusted_are_refused(
    database_url, study_of, live_server_factory
):
    """A proxy on this host that the server was not told about would make every client look
    like the host (never limited): such requests are refused until it is trusted."""
    study = study_of(3)
    server = live_server_factory(make_settings(database_url))
    with server.client(headers={"X-Forwarded-For": "198.51.100.7"}) as client:
        refused = claim(client, study.slug, "W0", "HIT0")
    assert refused.status_code == 503 and "ADVCRITIC_TRUSTED_PROXIES" in refused.json()["detail"]
    trusting = live_server_factory(make_settings(database_url, trusted_proxies=["127.0.0.1"]))
    with trusting.client(headers={"X-Forwarded-For": "198.51.100.7"}) as client:
        assert claim(client, study.slug, "W0", "HIT0").status_code == 200
    session = session_for(database_url)
    try:
        assert session.scalar(select(Allocation.source_address)) == "198.51.100.7"
    finally:
        session.close()


@pytest.mark.postgres
def test_many_concurrent_forgers_cannot_keep_a_real_worker_out(postgres_database_url, make_bundle):
    """40 forging clients on 4 addresses claim every HIT id at once with invented ids, until
    the limits stop them (2 holds per address: exactly the pool). Then each of the study's 8 HITs is accepted by its real worker:
    every one of them gets images (after waiting at most `share_after`)."""
    url = postgres_database_url
    assignments = 8
    study = import_study(url, make_bundle(n_adversarial=assignments * 5), items_per_assignment=5)
    hits = [f"HIT{i}" for i in range(assignments)]
    register_hits(url, study.slug, hits)
    env = {
        "ADVCRITIC_LIMIT_HOLDS_PER_ADDRESS": "2",
        "ADVCRITIC_LIMIT_ASSIGNMENTS_PER_HIT": "3",
        "ADVCRITIC_LIMIT_SHARE_AFTER_S": "2",
        "ADVCRITIC_LIMIT_ACCEPTS_PER_MINUTE": "30",
    }
    barrier = threading.Barrier(40)
    statuses: list[int] = []

    def forge(n: int, server_url: str) -> None:
        with client_from(server_url, f"127.0.2.{n % 4 + 1}") as client:
            barrier.wait()
            for k in range(6):
                answer = claim(client, study.slug, f"FORGER{n}-{k}", hits[(n + k) % assignments])
                statuses.append(answer.status_code)

    with serve_process(url, env=env) as server:
        with ThreadPoolExecutor(40) as pool:
            list(pool.map(lambda n: forge(n, server.url), range(40)))
        session = session_for(url)
        try:
            held = session.scalar(
                select(func.count())
                .select_from(Allocation)
                .where(Allocation.status == AllocationStatus.active)
            )
        finally:
            session.close()
        assert 429 in statuses and held == 4 * 2  # the limits held them back...
        assert _pool_is_empty(url, study.slug)  # ...but the pool is theirs
        real = []
        for i, hit in enumerate(hits):
            with client_from(server.url, f"127.0.3.{i + 1}") as worker:
                real.append(_claim_patiently(worker, study.slug, f"REAL{i}", hit))
    assert all(answer.status_code == 200 for answer in real), [a.text for a in real]
    assert {a.json()["outcome"] for a in real} == {"shared"}
    assert len({a.json()["assignment"] for a in real}) == assignments  # each other images


def _claim_patiently(client: httpx.Client, slug: str, worker: str, hit: str) -> httpx.Response:
    """What the HIT page does: wait as long as Retry-After says, then ask again."""
    for _ in range(10):
        answer = claim(client, slug, worker, hit)
        if answer.status_code not in (409, 429) or "retry-after" not in answer.headers:
            return answer
        time.sleep(int(answer.headers["retry-after"]))
    return answer


def _pool_is_empty(url: str, slug: str) -> bool:
    from study_server.db.models import Assignment, AssignmentStatus, Study

    session = session_for(url)
    try:
        return not session.scalar(
            select(func.count())
            .select_from(Assignment)
            .join(Study, Study.id == Assignment.study_id)
            .where(Study.slug == slug, Assignment.status == AssignmentStatus.available)
        )
    finally:
        session.close()


def _snapshot(url: str) -> tuple:
    session = session_for(url)
    try:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Allocation.__table__,)
        ) + (
            tuple(
                session.execute(select(Allocation.id, Allocation.status).order_by(Allocation.id))
            ),
        )
    finally:
        session.close()


def _refusals(url: str, status: int) -> int:
    session = session_for(url)
    try:
        return sum(
            1
            for detail in session.scalars(select(Event.detail).where(Event.kind == "refused"))
            if detail.get("status") == status
        )
    finally:
        session.close()


T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _claims_on_two_hits(database_url: str, make_bundle, *, assignments: int) -> Callable:
    """A study of `assignments` x 5 images with HITs H0 and H1; claims on it (`_claim_at`)
    with a one-hour hold, shared after 60 s."""
    study = import_study(
        database_url, make_bundle(n_adversarial=assignments * 5), items_per_assignment=5
    )
    register_hits(database_url, study.slug, ["H0", "H1"])
    consent = stored_consent_sha256(database_url, study.slug)
    policy = AllocationPolicy(timeout=timedelta(hours=1), share_after=timedelta(seconds=60))
    return functools.partial(_claim_at, database_url, study.slug, consent, policy)


def _claim_at(
    url: str, slug: str, consent: str, policy: AllocationPolicy, worker: str, hit: str, at: datetime
) -> Any:
    """An MTurk worker's accept of `hit`, at the time `at` (the rules, without HTTP)."""
    session = session_for(url)
    try:
        return accept(
            session=session,
            study_slug=slug,
            claimant=Claimant(
                WorkerRef(WorkerSource.mturk, worker),
                MTurkContext(f"A-{worker}", hit, MTURK_TEST_SUBMIT_HOST),
                None,
            ),
            consent_sha256=consent,
            now=at,
            policy=policy,
        )
    finally:
        session.close()


def test_a_shared_claim_waits_for_the_least_shared_images_rather_than_crowd_others(
    database_url, make_bundle
):
    """Rule 5's order: the fewest claims, then the oldest. HIT H0 drew both assignments, one
    of them already shared; a worker of H1 (which drew none) waits for the other to be
    `share_after` old instead of becoming the third on the first: the race the test of many
    forgers above ran into when its last draws were younger than `share_after`."""
    claim = _claims_on_two_hits(database_url, make_bundle, assignments=2)

    first = claim("F1", "H0", T0)
    second = claim("F2", "H0", T0 + timedelta(seconds=61))  # H0's second draw
    shared = claim("F3", "H0", T0 + timedelta(seconds=61))  # the pool is empty: shares
    assert first.outcome.value == second.outcome.value == "allocated"
    assert shared.outcome.value == "shared"
    assert shared.assignment_public_id == first.assignment_public_id  # the older one
    with pytest.raises(ConflictError) as early:
        claim("REAL", "H1", T0 + timedelta(seconds=62))
    assert early.value.headers == {"Retry-After": "59"}  # when the second one is ready
    real = claim("REAL", "H1", T0 + timedelta(seconds=121))
    assert real.outcome.value == "shared"
    assert real.assignment_public_id == second.assignment_public_id


def test_a_claim_shares_its_own_hits_images_first_but_never_as_a_third_while_others_have_one(
    database_url, make_bundle
):
    """Rule 5's candidates are the HIT's own draws and those of HITs that drew more than one:
    on a tie of claims the HIT's own, but never a third person on its own while another
    candidate has one claim. (Which HITs forgers happened to draw through once decided
    whether two real workers ended up on the same images: the test of many forgers above.)"""
    claim = _claims_on_two_hits(database_url, make_bundle, assignments=3)

    crowded = [claim(f"F{i}", "H0", T0) for i in range(2)]  # H0 drew two
    own = claim("F2", "H1", T0)  # H1 drew one: the pool is empty now
    assert {a.outcome.value for a in [*crowded, own]} == {"allocated"}
    tie = claim("X", "H1", T0 + timedelta(seconds=61))  # one claim on each: its own HIT's
    assert (tie.outcome.value, tie.assignment_public_id) == ("shared", own.assignment_public_id)
    real = claim("REAL", "H1", T0 + timedelta(seconds=62))  # its own has two now
    assert real.outcome.value == "shared"
    assert real.assignment_public_id in {a.assignment_public_id for a in crowded}


def test_holds_that_end_between_two_questions_ask_the_claim_to_come_back():
    """Under READ COMMITTED each statement sees the latest commits: the holds a HIT drew can
    end (expire, be flagged) between asking which they are and counting their claims. The
    claim then waits a second (409, Retry-After), instead of failing with a server error."""
    answers = {
        allocation_rules._POOL_NEXT: [],  # the HIT drew assignment 7, the pool is empty...
        allocation_rules._DRAWN_BY_CROWDED_HITS: [],
        allocation_rules._CLAIMS_ON: [],  # ...and by the next statement 7's holds had ended
    }

    class Answers:
        def execute(self, statement, params=None):
            return Rows(answers[statement])

        def scalars(self, statement, params=None):
            return Rows(answers[statement]).scalars()

    with pytest.raises(ConflictError, match="changed hands just now") as refused:
        allocation_rules.choose_assignment(
            Answers(),
            study_id=1,
            drawn=[7],
            now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
            policy=AllocationPolicy(timeout=timedelta(hours=1)),
        )
    assert refused.value.headers == {"Retry-After": "1"}
