"""What a simulated worker's browser sends, over real HTTP (shared by the server tests)."""

from __future__ import annotations

from typing import Any

import httpx

from testkit.servers import MTURK_TEST_SUBMIT_HOST


def consent_sha256(client: httpx.Client, slug: str) -> str:
    """The SHA-256 of the study's consent text: what the page sends once the person agreed."""
    answer = client.get(f"/api/studies/{slug}/consent")
    assert answer.status_code == 200, answer.text
    return answer.json()["sha256"]


def mturk_accept(
    client: httpx.Client,
    slug: str,
    *,
    worker: str,
    assignment: str,
    hit: str = "HIT0",
    consent: str | None = None,
) -> httpx.Response:
    """An MTurk worker who agreed to the consent text (`consent`: its SHA-256, else the
    study's current one)."""
    body = {
        "worker_id": worker,
        "mturk": {
            "assignment_id": assignment,
            "hit_id": hit,
            "turk_submit_to": MTURK_TEST_SUBMIT_HOST,
        },
        "consent_sha256": consent or consent_sha256(client, slug),
    }
    return client.post(f"/api/studies/{slug}/accept", json=body)


def lab_accept(
    client: httpx.Client, slug: str, *, code: str, consent: str | None = None
) -> httpx.Response:
    """A lab participant with an invitation code (testkit.studies.invite mints them)."""
    body = {"code": code, "consent_sha256": consent or consent_sha256(client, slug)}
    return client.post(f"/api/studies/{slug}/accept", json=body)


def _who(worker: str | None, mturk_assignment: str | None, code: str | None) -> dict[str, Any]:
    if code is not None:
        return {"code": code}
    return {"worker_id": worker, "mturk_assignment_id": mturk_assignment}


def submit(
    client: httpx.Client,
    accepted: dict[str, Any],
    *,
    labels: list[int],
    worker: str | None = None,
    mturk_assignment: str | None = None,
    code: str | None = None,
    positions: list[int] | None = None,
) -> httpx.Response:
    """Submit as an MTurk worker (`worker`, `mturk_assignment`) or a lab participant (`code`)."""
    positions = list(range(len(labels))) if positions is None else positions
    body: dict[str, Any] = {
        **_who(worker, mturk_assignment, code),
        "labels": [
            {"position": p, "label": label, "response_ms": 800}
            for p, label in zip(positions, labels, strict=True)
        ],
    }
    return client.post(accepted["submit_url"], json=body)


def save_label(
    client: httpx.Client,
    accepted: dict[str, Any],
    position: int,
    label: int,
    *,
    worker: str | None = None,
    mturk_assignment: str | None = None,
    code: str | None = None,
    response_ms: int | None = 700,
) -> httpx.Response:
    """What the page sends as each label is given."""
    body = {**_who(worker, mturk_assignment, code), "label": label, "response_ms": response_ms}
    return client.put(f"{accepted['label_url_prefix']}{position}", json=body)
