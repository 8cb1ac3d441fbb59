"""The MTurk ExternalQuestion flow and the lab mode, over HTTP against uvicorn, on both backends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from study_server.allocation import AllocationPolicy
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Event,
    Label,
    Stimulus,
    Verification,
)
from study_server.invitations import find_invite
from study_server.operations import Claimant, WorkerRef, accept
from testkit.databases import session_for
from testkit.servers import MTURK_TEST_SUBMIT_HOST
from testkit.studies import consent_sha256, import_study, invite
from tests.server.flow import consent_sha256 as flow_consent_sha256
from tests.server.flow import lab_accept, mturk_accept, submit


def _hit_url(slug: str, **params: str) -> str:
    return f"/hit/{slug}?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_preview_shows_instructions_and_an_example_but_no_study_image(live_server, study):
    with live_server.client() as client:
        page = client.get(
            _hit_url(study.slug, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="HIT0")
        )
    assert page.status_code == 200
    assert "Accept the HIT to begin" in page.text
    assert re.findall(r'src="([^"]+)"', page.text) == ["/static/example.png"]
    assert "/api/" not in page.text


def test_a_study_imported_while_the_server_runs_is_found_after_a_miss(
    live_server, study, make_bundle, database_url
):
    """The pages keep what they read of a study; a slug not found must not be remembered."""
    preview = {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "HIT0"}
    with live_server.client() as client:
        before = client.get(_hit_url("late-study", **preview))
        import_study(database_url, make_bundle(n_adversarial=5), slug="late-study")
        after = client.get(_hit_url("late-study", **preview))
        again = client.get(_hit_url(study.slug, **preview))
    assert before.status_code == 404 and "no study named &#39;late-study&#39;" in before.text
    assert after.status_code == 200 and "Accept the HIT to begin" in after.text
    assert again.status_code == 200


def test_the_instructions_give_the_number_of_images_people_will_really_see(
    live_server, study, make_bundle, database_url
):
    """10 images in assignments of 5, one catch trial dealt on top: one has 5 items, one 6."""
    preview = {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "HIT0"}
    import_study(database_url, make_bundle(n_adversarial=10, n_catch=1), slug="uneven")
    codes = invite(database_url, "uneven", 2)
    with live_server.client() as client:
        even = client.get(_hit_url(study.slug, **preview)).text
        uneven = client.get(_hit_url("uneven", **preview)).text
        sizes = [lab_accept(client, "uneven", code=code).json()["num_items"] for code in codes]
    assert "Label 5 images" in even and "You will see 5 small images" in even
    assert "Label 5\u20136 images" in uneven and "You will see 5\u20136 small images" in uneven
    assert sorted(sizes) == [5, 6]


def test_accepted_page_works_in_mturks_iframe_and_holds_no_answer_key(live_server, study):
    params = dict(
        assignmentId="ASSIGN1",
        hitId="HIT0",
        workerId="WORKER1",
        turkSubmitTo="https://www.mturk.com",
    )
    with live_server.client() as client:
        page = client.get(_hit_url(study.slug, **params))
        accepted = mturk_accept(client, study.slug, worker="WORKER1", assignment="ASSIGN1").json()
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    ancestors = re.search(r"frame-ancestors ([^;]+)", csp).group(1).split()
    assert ancestors and all(
        host.startswith("https://") and host.endswith("mturk.com") for host in ancestors
    )
    assert (
        "x-frame-options" not in page.headers
    )  # it would override frame-ancestors and break the iframe
    session = session_for(live_server.settings.database_url)
    try:
        secrets = {s.stimulus_key for s in session.scalars(select(Stimulus))}
    finally:
        session.close()
    for body in (page.text, str(accepted)):
        assert not any(key in body for key in secrets)
        assert "target" not in body and "original_label" not in body


def test_a_worker_labels_a_whole_assignment_over_mturk(live_server, study):
    with live_server.client() as client:
        response = mturk_accept(client, study.slug, worker="W1", assignment="A1")
        assert response.status_code == 200, response.text
        accepted = response.json()
        assert (accepted["outcome"], accepted["num_items"]) == ("allocated", 5)
        for url in accepted["item_urls"]:
            image = client.get(url)
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        again = mturk_accept(client, study.slug, worker="W1", assignment="A1").json()
        assert (again["outcome"], again["assignment"]) == ("resumed", accepted["assignment"])
        stored = submit(
            client, accepted, worker="W1", mturk_assignment="A1", labels=[3, 1, 4, 1, 5]
        )
        assert (stored.json()["status"], stored.json()["labels"]) == ("stored", 5)
        assert "Thank you" in stored.json()["debrief"]["html"]  # the debrief comes with it
        retry = submit(client, accepted, worker="W1", mturk_assignment="A1", labels=[3, 1, 4, 1, 5])
        assert retry.status_code == 200 and retry.json()["status"] == "already_submitted"
        reload = mturk_accept(client, study.slug, worker="W1", assignment="A1").json()
        assert reload["outcome"] == "submitted"  # the page only has the hand-off to MTurk left
        other_hit = mturk_accept(client, study.slug, worker="W1", assignment="A9", hit="HIT1")
        assert other_hit.status_code == 409 and "only one" in other_hit.json()["detail"]
    session = session_for(live_server.settings.database_url)
    try:
        labels = session.execute(select(Label.position, Label.label).order_by(Label.position)).all()
        assert [tuple(row) for row in labels] == [(0, 3), (1, 1), (2, 4), (3, 1), (4, 5)]
        allocation = session.scalar(select(Allocation))
        assert (allocation.status, allocation.verification) == (
            AllocationStatus.submitted,
            Verification.unverified,
        )
        assert (allocation.mturk_assignment_id, allocation.hit_id, allocation.turk_submit_to) == (
            "A1",
            "HIT0",
            MTURK_TEST_SUBMIT_HOST,
        )
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
        assert (
            kinds.count("allocated") == 1 and kinds.count("submitted") == 1 and "refused" in kinds
        )
    finally:
        session.close()


def test_each_worker_gets_a_different_assignment_until_none_is_left(live_server, study):
    with live_server.client() as client:
        held = [
            mturk_accept(client, study.slug, worker=f"W{i}", assignment=f"A{i}").json()[
                "assignment"
            ]
            for i in range(3)
        ]
        assert len(set(held)) == 3
        late = mturk_accept(client, study.slug, worker="W3", assignment="A3")
    assert late.status_code == 409 and "taken" in late.json()["detail"]


def test_the_lab_mode_needs_no_mturk(live_server, study):
    (code,) = invite(live_server.settings.database_url, study.slug)
    with live_server.client() as client:
        start = client.get(f"/lab/{study.slug}")
        assert start.status_code == 200 and "invitation code" in start.text
        page = client.get(f"/lab/{study.slug}", params={"code": code})
        assert page.status_code == 200 and '"mode": "local"' in page.text
        accepted = lab_accept(client, study.slug, code=code).json()
        assert (
            submit(client, accepted, code=code, labels=[0, 1, 2, 3, 4]).json()["status"] == "stored"
        )
    session = session_for(live_server.settings.database_url)
    try:
        allocation = session.scalar(select(Allocation))
        assert (
            allocation.verification == Verification.invited
            and allocation.mturk_assignment_id is None
        )
    finally:
        session.close()


def test_an_abandoned_allocation_times_out_and_goes_back_to_the_pool(database_url, study):
    now = datetime.now(UTC)
    timeout = timedelta(minutes=20)
    codes = dict(
        zip(["p0", "p1", "p2", "p-late"], invite(database_url, study.slug, 4), strict=True)
    )
    consent = consent_sha256(database_url, study.slug)

    def take(participant: str, at: datetime):
        session = session_for(database_url)
        try:
            found = find_invite(session, codes[participant])
            session.rollback()  # the accept opens its own (write) transaction
            return accept(
                session=session,
                study_slug=study.slug,
                claimant=Claimant(WorkerRef.of_invite(found)),
                consent_sha256=consent,
                now=at,
                policy=AllocationPolicy(timeout=timeout),
                invite=found,
            )
        finally:
            session.close()

    first = [take(f"p{i}", now) for i in range(3)]
    later = take("p-late", now + timeout + timedelta(seconds=1))
    assert later.outcome.value == "allocated"
    assert (
        later.assignment_public_id == first[0].assignment_public_id
    )  # the lowest free one, released
    session = session_for(database_url)
    try:
        statuses = session.execute(
            select(Allocation.status, func.count()).group_by(Allocation.status)
        ).all()
        assert dict(statuses) == {AllocationStatus.expired: 3, AllocationStatus.active: 1}
    finally:
        session.close()
    # the worker who let it expire may come back and gets an assignment again (one at most, still)
    back = take("p0", now + timeout + timedelta(seconds=2))
    assert (
        back.outcome.value == "allocated"
        and back.assignment_public_id != later.assignment_public_id
    )


def test_a_page_and_an_accept_take_no_thread_of_the_server_once_its_study_is_read(
    live_server, study, monkeypatch
):
    """Under load a thread hop costs a hand-over of Python's lock and a turn of the event
    loop (10-30 ms): a HIT page whose study data is kept answers on the loop alone, and on
    PostgreSQL an accept goes to a database process. A plain `def` dependency (FastAPI runs
    it in the thread pool) once cost each of them a hop just to read the settings."""
    import anyio.to_thread

    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function, *args, **kwargs):
        hops.append(getattr(function, "__qualname__", repr(function)))
        return await run_sync(function, *args, **kwargs)

    params = dict(
        assignmentId="A1", hitId="HIT0", workerId="W1", turkSubmitTo="https://www.mturk.com"
    )
    with live_server.client() as client:
        assert client.get(_hit_url(study.slug, **params)).status_code == 200  # reads the study
        consent = flow_consent_sha256(client, study.slug)
        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        assert client.get(_hit_url(study.slug, **params)).status_code == 200
        assert (
            client.get(
                _hit_url(study.slug, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="HIT0")
            ).status_code
            == 200
        )
        assert hops == [], hops
        accepted = mturk_accept(client, study.slug, worker="W1", assignment="A1", consent=consent)
        assert accepted.status_code == 200, accepted.text
    postgres = not live_server.settings.database_url.startswith("sqlite")
    assert len(hops) == (0 if postgres else 1), hops  # SQLite: the accept's one hop
