"""Every kind of bad input gets a clear 4xx, and nothing is stored or overwritten."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from study_server.db.models import Allocation, Event, Label, Worker
from testkit.databases import session_for
from tests.server.flow import consent_sha256, mturk_accept, submit

INJECTIONS = [
    "'; DROP TABLE labels; --",
    "<script>alert(1)</script>",
    '" onmouseover="x',
    "W1' OR '1'='1",
]


def _snapshot(url: str) -> tuple:
    session = session_for(url)
    try:
        labels = session.execute(
            select(Label.assignment_id, Label.position, Label.label).order_by(Label.id)
        ).all()
        allocations = session.execute(
            select(
                Allocation.id, Allocation.assignment_id, Allocation.worker_id, Allocation.status
            ).order_by(Allocation.id)
        ).all()
        workers = session.scalar(select(func.count()).select_from(Worker))
        return [tuple(r) for r in labels], [tuple(r) for r in allocations], workers
    finally:
        session.close()


@pytest.fixture
def submitted(live_server, study):
    """W1 has submitted labels for their assignment; W2 holds another one, unsubmitted."""
    with live_server.client() as client:
        first = mturk_accept(client, study.slug, worker="W1", assignment="A1").json()
        assert (
            submit(
                client, first, worker="W1", mturk_assignment="A1", labels=[1, 2, 3, 4, 5]
            ).status_code
            == 200
        )
        second = mturk_accept(client, study.slug, worker="W2", assignment="A2").json()
    return first, second


def test_submissions_that_must_be_refused(live_server, study, submitted):
    first, second = submitted
    before = _snapshot(live_server.settings.database_url)
    cases = [
        # (what, request body changes, expected status, words in the reason)
        (
            "someone else's assignment",
            dict(accepted=second, worker="W1", mturk_assignment="A1"),
            403,
            "not allocated to you",
        ),
        (
            "unknown worker",
            dict(accepted=second, worker="NOBODY", mturk_assignment="A2"),
            403,
            "not allocated to you",
        ),
        (
            "wrong MTurk assignment",
            dict(accepted=second, worker="W2", mturk_assignment="A1"),
            403,
            "does not match",
        ),
        (
            "second, different submission",
            dict(accepted=first, worker="W1", mturk_assignment="A1", labels=[5, 4, 3, 2, 1]),
            409,
            "already submitted",
        ),
        (
            "label outside the classes",
            dict(accepted=second, worker="W2", mturk_assignment="A2", labels=[1, 2, 3, 4, 10]),
            422,
            "outside the classes 0..9",
        ),
        (
            "negative label",
            dict(accepted=second, worker="W2", mturk_assignment="A2", labels=[1, 2, -1, 4, 5]),
            422,
            "outside the classes",
        ),
        (
            "missing items",
            dict(accepted=second, worker="W2", mturk_assignment="A2", labels=[1, 2, 3]),
            422,
            "missing items [3, 4]",
        ),
        (
            "extra items",
            dict(accepted=second, worker="W2", mturk_assignment="A2", labels=[1, 2, 3, 4, 5, 6]),
            422,
            "items [5] are not in this assignment",
        ),
        (
            "duplicated item",
            dict(
                accepted=second,
                worker="W2",
                mturk_assignment="A2",
                labels=[1, 2, 3, 4, 5],
                positions=[0, 1, 2, 3, 3],
            ),
            422,
            "labelled more than once",
        ),
        (
            "unknown assignment",
            dict(
                accepted={"submit_url": "/api/assignments/NoSuchAssignment/submit"},
                worker="W2",
                mturk_assignment="A2",
            ),
            404,
            "no such assignment",
        ),
    ]
    with live_server.client() as client:
        for what, kwargs, status, reason in cases:
            kwargs.setdefault("labels", [1, 2, 3, 4, 5])
            response = submit(client, **kwargs)
            assert response.status_code == status, (what, response.text)
            assert reason in response.json()["detail"], (what, response.text)
    assert _snapshot(live_server.settings.database_url) == before
    session = session_for(live_server.settings.database_url)
    try:
        refused = session.scalar(
            select(func.count()).select_from(Event).where(Event.kind == "refused")
        )
        assert refused >= len(cases) - 2  # pydantic-level 422s never reach the audit; the rest do
    finally:
        session.close()


MALFORMED = [
    (
        {"worker_id": "W2", "mturk_assignment_id": "A2", "labels": [{"position": 0, "label": "3"}]},
        "valid integer",
    ),
    (
        {"worker_id": "W2", "mturk_assignment_id": "A2", "labels": [{"position": 0, "label": 3.5}]},
        "valid integer",
    ),
    (
        {
            "worker_id": "W2",
            "mturk_assignment_id": "A2",
            "labels": [{"position": 0, "label": 3, "secret": 1}],
        },
        "Extra inputs",
    ),
    ({"worker_id": "W2", "mturk_assignment_id": "A2", "labels": []}, "at least 1"),
    ({"worker_id": "W2", "labels": [{"position": 0, "label": 1}], "admin": True}, "Extra inputs"),
    (
        {
            "worker_id": "W2",
            "mturk_assignment_id": "A2",
            "labels": [{"position": True, "label": 1}],
        },
        "valid integer",
    ),
]


def test_malformed_bodies_are_422_with_the_field_named(live_server, study, submitted):
    _, second = submitted
    before = _snapshot(live_server.settings.database_url)
    with live_server.client() as client:
        for body, reason in MALFORMED:
            response = client.post(second["submit_url"], json=body)
            assert response.status_code == 422 and reason in response.text, (body, response.text)
    assert _snapshot(live_server.settings.database_url) == before


def test_oversized_and_broken_bodies(live_server, study, submitted):
    _, second = submitted
    before = _snapshot(live_server.settings.database_url)
    limit = live_server.settings.max_body_bytes
    huge = (
        b'{"worker_id": "W2", "labels": [' + b'{"position": 0, "label": 1},' * (limit // 20) + b"]}"
    )
    with live_server.client() as client:
        announced = client.post(
            second["submit_url"], content=huge, headers={"content-type": "application/json"}
        )
        streamed = client.post(
            second["submit_url"],
            content=iter([huge[:1000], huge[1000:]]),
            headers={"content-type": "application/json"},
        )
        broken = client.post(
            second["submit_url"],
            content=b'{"worker_id": ',
            headers={"content-type": "application/json"},
        )
    assert (
        announced.status_code == 413 and f"larger than {limit} bytes" in announced.json()["detail"]
    )
    assert streamed.status_code == 413
    assert broken.status_code == 422 and "JSON" in broken.text
    assert _snapshot(live_server.settings.database_url) == before


def test_injection_strings_are_refused_and_never_echoed_raw(live_server, study):
    before = _snapshot(live_server.settings.database_url)
    for evil in INJECTIONS:
        _check_injection(live_server, study, evil)
    assert _snapshot(live_server.settings.database_url) == before


def _check_injection(live_server, study, evil: str) -> None:
    with live_server.client() as client:
        pages = [
            client.get(
                f"/hit/{study.slug}",
                params={
                    "assignmentId": "A1",
                    "hitId": "HIT0",
                    "workerId": evil,
                    "turkSubmitTo": "https://www.mturk.com",
                },
            ),
            client.get(
                f"/hit/{study.slug}",
                params={
                    "assignmentId": evil,
                    "hitId": "HIT0",
                    "workerId": "W1",
                    "turkSubmitTo": "https://www.mturk.com",
                },
            ),
            client.get(
                f"/hit/{study.slug}",
                params={
                    "assignmentId": "A1",
                    "hitId": "HIT0",
                    "workerId": "W1",
                    "turkSubmitTo": evil,
                },
            ),
            client.get(f"/lab/{study.slug}", params={"code": evil}),
        ]
        api = [
            mturk_accept(client, study.slug, worker=evil, assignment="A1"),
            mturk_accept(client, study.slug, worker="W1", assignment=evil),
            client.post(
                f"/api/studies/{study.slug}/accept",
                json={"code": evil, "consent_sha256": consent_sha256(client, study.slug)},
            ),
        ]
        unknown_study = client.get(
            "/hit/" + evil.replace("/", ""), params={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}
        )
    for page in pages:
        assert page.status_code == 422, page.text
        assert evil not in page.text
    for response in api:
        assert response.status_code == 422
    assert unknown_study.status_code == 404 and evil not in unknown_study.text


def test_unknown_hits_studies_and_submit_hosts(live_server, study):
    before = _snapshot(live_server.settings.database_url)
    with live_server.client() as client:
        unknown_hit = mturk_accept(
            client, study.slug, worker="W1", assignment="A1", hit="HIT-NOT-OURS"
        )
        unknown_study = mturk_accept(
            client, "no-such-study", worker="W1", assignment="A1", consent="0" * 64
        )
        bad_host = client.post(
            f"/api/studies/{study.slug}/accept",
            json={
                "worker_id": "W1",
                "mturk": {
                    "assignment_id": "A1",
                    "hit_id": "HIT0",
                    "turk_submit_to": "https://evil.example",
                },
                "consent_sha256": consent_sha256(client, study.slug),
            },
        )
        page = client.get(
            f"/hit/{study.slug}",
            params={
                "assignmentId": "A1",
                "hitId": "HIT0",
                "workerId": "W1",
                "turkSubmitTo": "https://evil.example",
            },
        )
        image = client.get("/api/assignments/NoSuchAssignment/items/0")
    assert (
        unknown_hit.status_code == 404 and "is not a HIT of study" in unknown_hit.json()["detail"]
    )
    assert unknown_study.status_code == 404 and "no study named" in unknown_study.json()["detail"]
    assert bad_host.status_code == 422 and "turkSubmitTo" in bad_host.json()["detail"]
    assert page.status_code == 422 and "turkSubmitTo" in page.text
    assert image.status_code == 404
    assert _snapshot(live_server.settings.database_url) == before


def test_images_of_assignments_still_in_the_pool_are_not_served(live_server, study):
    session = session_for(live_server.settings.database_url)
    try:
        from study_server.db.models import Assignment

        pooled = session.scalars(select(Assignment.public_id)).first()
    finally:
        session.close()
    with live_server.client() as client:
        assert client.get(f"/api/assignments/{pooled}/items/0").status_code == 404


def test_an_mturk_assignment_id_cannot_be_taken_over_by_another_worker(live_server, study):
    with live_server.client() as client:
        assert mturk_accept(client, study.slug, worker="W1", assignment="A1").status_code == 200
        before = _snapshot(live_server.settings.database_url)
        thief = mturk_accept(client, study.slug, worker="W666", assignment="A1")
    assert thief.status_code == 403 and "belongs to another worker" in thief.json()["detail"]
    assert _snapshot(live_server.settings.database_url)[:2] == before[:2]
