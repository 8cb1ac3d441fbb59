"""What a simulated worker's browser sends, over real HTTP (shared by the server tests)."""

from __future__ import annotations

from typing import Any

import httpx

from testkit.servers import MTURK_TEST_SUBMIT_HOST


def mturk_accept(
    client: httpx.Client, slug: str, *, worker: str, assignment: str, hit: str = "HIT0"
) -> httpx.Response:
    body = {
        "worker_id": worker,
        "mturk": {
            "assignment_id": assignment,
            "hit_id": hit,
            "turk_submit_to": MTURK_TEST_SUBMIT_HOST,
        },
    }
    return client.post(f"/api/studies/{slug}/accept", json=body)


def lab_accept(client: httpx.Client, slug: str, *, participant: str) -> httpx.Response:
    return client.post(f"/api/studies/{slug}/accept", json={"worker_id": participant})


def submit(
    client: httpx.Client,
    accepted: dict[str, Any],
    *,
    worker: str,
    labels: list[int],
    mturk_assignment: str | None = None,
    positions: list[int] | None = None,
) -> httpx.Response:
    positions = list(range(len(labels))) if positions is None else positions
    body: dict[str, Any] = {
        "worker_id": worker,
        "labels": [
            {"position": p, "label": label, "response_ms": 800}
            for p, label in zip(positions, labels)
        ],
    }
    if mturk_assignment is not None:
        body["mturk_assignment_id"] = mturk_assignment
    return client.post(accepted["submit_url"], json=body)
