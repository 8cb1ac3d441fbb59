"""A study run on MTurk (the loopback fake) with a forger active from the start.

The forger knows the HIT page and every HIT id, invents workerIds and assignmentIds, takes
whatever the limits let it take and submits junk, again and again. The real workers accept
the HITs on MTurk and label. In the end every image of the study is labeled by a worker MTurk
confirms, the forged submissions are flagged with their reason and left out of Table 2, and
work the requester rejects goes back to the pool.
"""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select

from analysis.cli import main as analyze_study
from markets.mturk.cli import main as mturk
from study_server.db.models import (
    Allocation,
    Assignment,
    AssignmentStatus,
    Label,
    MTurkHit,
    Stimulus,
    Verification,
    Worker,
)
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study
from tests.fixtures.mturk import cli_settings, label_by_rule, records_by_image
from tests.server.flow import consent_sha256

ASSIGNMENTS, ITEMS = 6, 5


def _client(url: str, address: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=address)
    )


def _accept(web: httpx.Client, slug: str, worker: str, assignment: str, hit: str, submit_to: str):
    """The HIT page's accept, waiting as long as Retry-After says (the page does the same)."""
    for _ in range(10):
        answer = web.post(
            f"/api/studies/{slug}/accept",
            json={
                "worker_id": worker,
                "mturk": {"assignment_id": assignment, "hit_id": hit, "turk_submit_to": submit_to},
                "consent_sha256": consent_sha256(web, slug),
            },
        )
        if answer.status_code not in (409, 429) or "retry-after" not in answer.headers:
            return answer
        time.sleep(int(answer.headers["retry-after"]))
    return answer


def _submit(web: httpx.Client, accepted: dict, worker: str, assignment: str, labels: list[int]):
    return web.post(
        accepted["submit_url"],
        json={
            "worker_id": worker,
            "mturk_assignment_id": assignment,
            "labels": [
                {"position": p, "label": x, "response_ms": 900} for p, x in enumerate(labels)
            ],
        },
    )


def _forge(server_url: str, slug: str, hits: list[str], submit_to: str, wave: int) -> int:
    """One wave of the forger, from three addresses: claim every HIT, submit junk."""
    taken = 0
    for n, hit in enumerate(hits):
        with _client(server_url, f"127.0.4.{n % 3 + 1}") as web:
            worker, assignment = f"AFORGE{wave}X{n}", f"FORGED{wave}X{n}"
            answer = web.post(
                f"/api/studies/{slug}/accept",
                json={
                    "worker_id": worker,
                    "mturk": {
                        "assignment_id": assignment,
                        "hit_id": hit,
                        "turk_submit_to": submit_to,
                    },
                    "consent_sha256": consent_sha256(web, slug),
                },
            )
            if answer.status_code != 200:
                continue
            taken += 1
            accepted = answer.json()
            assert (
                _submit(web, accepted, worker, assignment, [0] * accepted["num_items"]).status_code
                == 200
            )
    return taken


def _real_worker(fake, server_url: str, slug: str, hit: str, worker: str, by_image, address: str):
    with fake.worker_site() as site, _client(server_url, address) as web:
        taken = site.post("/_worker/accept", json={"hitId": hit, "workerId": worker})
        assert taken.status_code == 200, taken.text
        params = {k: v[0] for k, v in parse_qs(urlsplit(taken.json()["url"]).query).items()}
        answer = _accept(web, slug, worker, params["assignmentId"], hit, params["turkSubmitTo"])
        assert answer.status_code == 200, answer.text  # never refused, whatever the forger holds
        accepted = answer.json()
        records = [
            by_image[hashlib.sha256(web.get(url).content).hexdigest()]
            for url in accepted["item_urls"]
        ]
        labels = [label_by_rule(record) for record in records]
        stored = _submit(web, accepted, worker, params["assignmentId"], labels)
        assert stored.json()["status"] == "stored", stored.text
        done = site.post(
            f"{urlsplit(params['turkSubmitTo']).path}/mturk/externalSubmit",
            data={"assignmentId": params["assignmentId"], "n": str(len(labels))},
        )
        assert done.status_code == 200
        return params["assignmentId"]


def test_every_image_ends_up_labeled_by_confirmed_workers_while_a_forger_is_at_work(
    database_url, make_bundle, aws_env, live_server_factory, capsys
):
    fake = aws_env
    bundle = make_bundle(n_adversarial=ASSIGNMENTS * ITEMS)
    import_study(database_url, bundle, items_per_assignment=ITEMS)
    server = live_server_factory(
        make_settings(
            database_url,
            turk_submit_hosts=[fake.url],
            limits={"holds_per_address": 2, "assignments_per_hit": 3, "share_after_s": 1},
        )
    )
    settings = cli_settings(database_url, fake)
    assert mturk(["publish", "--study", "ours-fc", "--url", server.url], settings) == 0
    hits = _hit_ids(database_url)
    by_image = records_by_image(bundle)

    forged = _forge(server.url, "ours-fc", hits, fake.url, wave=0)  # before anyone else
    assert forged == ASSIGNMENTS  # the whole pool, by the limits: 3 addresses x 2 holds
    real = []
    for i, hit in enumerate(hits):
        real.append(
            _real_worker(
                fake, server.url, "ours-fc", hit, f"AREAL{i}", by_image, f"127.0.5.{i + 1}"
            )
        )
        _forge(server.url, "ours-fc", hits, fake.url, wave=i + 1)  # and it goes on

    capsys.readouterr()
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    assert f"confirmed: {ASSIGNMENTS}," in capsys.readouterr().out
    session = session_for(database_url)
    try:
        counted = session.execute(
            select(Label.stimulus_id, func.count())
            .join(Allocation, Allocation.id == Label.allocation_id)
            .where(Allocation.verification == Verification.confirmed)
            .group_by(Label.stimulus_id)
        ).all()
        stimuli = session.scalar(select(func.count()).select_from(Stimulus))
        assert len(counted) == stimuli and {n for _, n in counted} == {1}  # each image once
        forged_rows = session.execute(
            select(Allocation.verification, Allocation.verification_note)
            .join(Worker, Worker.id == Allocation.worker_id)
            .where(Worker.external_id.like("AFORGE%"), Allocation.status == "submitted")
        ).all()
        assert forged_rows and all(v == Verification.flagged for v, _ in forged_rows)
        assert all("MTurk lists no submitted assignment" in note for _, note in forged_rows)
        forged_labels = session.scalar(
            select(func.count())
            .select_from(Label)
            .join(Allocation, Allocation.id == Label.allocation_id)
            .where(Allocation.verification == Verification.flagged)
        )
        assert forged_labels == len(forged_rows) * ITEMS  # kept, excluded
    finally:
        session.close()

    capsys.readouterr()
    assert (
        analyze_study(["--defense", "ours", "--format", "json", "--database-url", database_url])
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["change"]["total"] == ASSIGNMENTS * ITEMS and result["annotators"] == ASSIGNMENTS
    assert result["counted_source"] == "mturk"
    assert result["excluded"] == {
        "MTurk submission flagged (not confirmed by MTurk, or rejected)": forged_labels
    }

    # The requester rejects one real worker: those images go back to the pool.
    rejected = real[0]
    assert (
        mturk(
            [
                "reject",
                "--study",
                "ours-fc",
                "--assignment",
                rejected,
                "--reason",
                "All one label.",
            ],
            settings,
        )
        == 0
    )
    session = session_for(database_url)
    try:
        allocation = session.scalar(
            select(Allocation).where(Allocation.mturk_assignment_id == rejected)
        )
        assert allocation.verification == Verification.flagged
        assert "rejected on MTurk" in allocation.verification_note
        assert (
            session.scalar(
                select(Assignment.status).where(Assignment.id == allocation.assignment_id)
            )
            == AssignmentStatus.available
        )
        assert (
            session.scalar(
                select(func.count()).select_from(Label).where(Label.allocation_id == allocation.id)
            )
            == ITEMS
        )  # its labels stay, excluded
    finally:
        session.close()


def test_a_flagged_submission_gives_its_images_back_at_once(
    sqlite_database_url, make_bundle, aws_env, live_server_factory, capsys
):
    url, fake = sqlite_database_url, aws_env
    import_study(url, make_bundle(n_adversarial=10), items_per_assignment=5)
    server = live_server_factory(make_settings(url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(url, fake)
    assert mturk(["publish", "--study", "ours-fc", "--url", server.url], settings) == 0
    hit = _hit_ids(url)[0]
    with server.client() as web:
        accepted = _accept(web, "ours-fc", "AFORGER", "FORGED1", hit, fake.url).json()
        assert _submit(web, accepted, "AFORGER", "FORGED1", [0] * 5).status_code == 200
    assert _status(url, accepted["assignment"]) == AssignmentStatus.submitted
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    assert _status(url, accepted["assignment"]) == AssignmentStatus.available  # back in the pool
    with server.client() as web:  # and the next worker gets exactly those images
        again = _accept(web, "ours-fc", "AREAL", "REAL1", _hit_ids(url)[1], fake.url).json()
    assert again["assignment"] == accepted["assignment"] and again["outcome"] == "allocated"


def _status(url: str, public_id: str) -> AssignmentStatus:
    session = session_for(url)
    try:
        return session.scalar(select(Assignment.status).where(Assignment.public_id == public_id))
    finally:
        session.close()


def _hit_ids(url: str) -> list[str]:
    session = session_for(url)
    try:
        return list(session.scalars(select(MTurkHit.hit_id).order_by(MTurkHit.slot)))
    finally:
        session.close()
