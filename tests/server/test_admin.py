"""Admin endpoints: nothing without the token from settings; progress and exports that add up."""

from __future__ import annotations

import csv
import io

from contract.labels import EXPORT_COLUMNS
from study_server.invitations import code_sha256
from testkit.servers import ADMIN_TOKEN, make_settings
from testkit.studies import invite
from tests.server.flow import lab_accept, mturk_accept, submit

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_admin_needs_the_token(live_server, study, live_server_factory):
    with live_server.client() as client:
        for path in (
            "/admin/studies",
            f"/admin/studies/{study.slug}/progress",
            f"/admin/studies/{study.slug}/export",
        ):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": ADMIN_TOKEN}).status_code == 401
            assert client.get(path, headers=AUTH).status_code == 200
    no_token = live_server_factory(
        make_settings(live_server.settings.database_url, admin_token=None)
    )
    with no_token.client() as client:
        response = client.get("/admin/studies", headers=AUTH)
    assert response.status_code == 503 and "ADVCRITIC_ADMIN_TOKEN" in response.json()["detail"]


def test_progress_and_exports_match_what_was_labeled(live_server, study):
    with live_server.client() as client:
        first = mturk_accept(client, study.slug, worker="W1", assignment="A1").json()
        submit(client, first, worker="W1", mturk_assignment="A1", labels=[9, 8, 7, 6, 5])
        (code,) = invite(live_server.settings.database_url, study.slug)
        second = lab_accept(client, study.slug, code=code).json()
        submit(client, second, code=code, labels=[0, 0, 1, 1, 2])
        mturk_accept(client, study.slug, worker="W3", assignment="A3")
        progress = client.get(f"/admin/studies/{study.slug}/progress", headers=AUTH).json()
        exported_csv = client.get(
            f"/admin/studies/{study.slug}/export", params={"format": "csv"}, headers=AUTH
        )
        exported_json = client.get(
            f"/admin/studies/{study.slug}/export", params={"format": "json"}, headers=AUTH
        ).json()
        unknown = client.get("/admin/studies/nope/progress", headers=AUTH)
        bad_format = client.get(
            f"/admin/studies/{study.slug}/export", params={"format": "xml"}, headers=AUTH
        )
    assert progress["assignments"] == {"available": 0, "allocated": 1, "submitted": 2}
    assert progress["allocations"] == {"active": 1, "submitted": 2, "expired": 0}
    assert progress["verification"] == {"unverified": 1, "invited": 1}
    assert (progress["labels"], progress["workers"], progress["stimuli"]) == (10, 3, 15)
    assert progress["attention"] == {"not_applicable": 2} and progress["experiment"] is None
    rows = list(csv.DictReader(io.StringIO(exported_csv.text)))
    assert exported_csv.headers["content-type"].startswith("text/csv")
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 10
    by_worker = {}
    for row in rows:
        by_worker.setdefault(row["worker_id"], []).append(int(row["label"]))
    lab_worker = f"lab:{code_sha256(code)[:16]}"  # never the code itself
    assert by_worker == {"W1": [9, 8, 7, 6, 5], lab_worker: [0, 0, 1, 1, 2]}
    assert code not in exported_csv.text
    assert {row["worker_source"] for row in rows} == {"mturk", "local"}
    assert all(row["kind"] == "adversarial" and row["target"] != "" for row in rows)
    assert exported_json["study"]["slug"] == study.slug
    assert [r["label"] for r in exported_json["labels"]] == [int(r["label"]) for r in rows]
    assert unknown.status_code == 404 and bad_format.status_code == 422
