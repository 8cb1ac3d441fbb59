"""A simulated worker doing one HIT end to end, over real HTTP, the way MTurk and the HIT page
would: accept the HIT on the fake's worker site, open the HIT page on the live study server,
accept the assignment through its API, fetch every image, submit the labels, and post to the
fake's ``/mturk/externalSubmit``.

What the worker answers is the caller's `choose(png) -> label`: it sees each image's bytes,
exactly what the page shows (the page carries no stimulus ids). The lifecycle tests answer by
a fixed rule; `advcritic dry-run` answers with simulated annotators (analysis/dry_run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from markets.flow import agreed_consent, label_and_submit, open_page
from markets.flow import expect_ok as _ok


@dataclass(frozen=True)
class HitWork:
    """What one worker did: MTurk's ids, the images they were shown (PNG bytes), their labels."""

    assignment_id: str
    hit_id: str
    worker_id: str
    images: tuple[bytes, ...]
    labels: tuple[int, ...]


def open_assignment(
    study_server: httpx.Client, page_url: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """What the HIT page does on load: read MTurk's query parameters, show the consent text,
    and once the worker agreed, accept through the API.

    `page_url` may be absolute (as MTurk frames it); it is opened on `study_server`.
    """
    slug, params = open_page(study_server, page_url, "HIT page")
    accepted = study_server.post(
        f"/api/studies/{slug}/accept",
        json={
            "worker_id": params["workerId"],
            "mturk": {
                "assignment_id": params["assignmentId"],
                "hit_id": params["hitId"],
                "turk_submit_to": params["turkSubmitTo"],
            },
            "consent_sha256": agreed_consent(study_server, slug),
        },
    )
    return params, _ok("accept", accepted).json()


def do_hit(
    worker_site: httpx.Client,
    study_server: httpx.Client,
    *,
    hit_id: str,
    worker_id: str,
    choose: Callable[[bytes], int],
    response_ms: int = 900,
    external_submit: bool = True,
) -> HitWork:
    """`worker_id` does HIT `hit_id`: `worker_site` is a client on the fake MTurk, `study_server`
    one on the live study server (the HIT page's absolute URL is opened there)."""
    taken = _ok(
        "accept the HIT on the worker site",
        worker_site.post("/_worker/accept", json={"hitId": hit_id, "workerId": worker_id}),
    )
    params, accepted = open_assignment(study_server, taken.json()["url"])
    who = {"worker_id": worker_id, "mturk_assignment_id": params["assignmentId"]}
    images, labels = label_and_submit(
        study_server, accepted, who, choose=choose, response_ms=response_ms
    )
    if external_submit:
        _ok(
            "externalSubmit",
            worker_site.post(
                f"{urlsplit(params['turkSubmitTo']).path}/mturk/externalSubmit",
                data={"assignmentId": params["assignmentId"], "labels": str(len(labels))},
            ),
        )
    return HitWork(params["assignmentId"], hit_id, worker_id, images, labels)
