"""A simulated participant taking part end to end, over real HTTP, the way Prolific and the
study page would: start on the fake's participant side, open the study page on the live study
server with Prolific's parameters, accept, fetch every image, submit, ask the server for the
completion URL and open it on the fake.

What the participant answers is the caller's `choose(png) -> label` (the page carries no
stimulus ids). The lifecycle tests answer by a fixed rule; `advcritic dry-run` answers with
simulated annotators (analysis/dry_run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from markets.flow import agreed_consent, label_and_submit, open_page
from markets.flow import expect_ok as _ok


@dataclass(frozen=True)
class Participation:
    """What one participant did: Prolific's ids, the images shown (PNG bytes), the labels."""

    participant_id: str
    session_id: str
    study_id: str
    images: tuple[bytes, ...]
    labels: tuple[int, ...]
    completion_url: str | None


def open_study(web: httpx.Client, url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """What the study page does on load: read Prolific's parameters, show the consent text,
    and once the participant agreed, accept through the API."""
    slug, params = open_page(web, url, "study page")
    ids = {
        "participant_id": params["PROLIFIC_PID"],
        "study_id": params["STUDY_ID"],
        "session_id": params["SESSION_ID"],
    }
    return slug, ids, _ok("accept", accept(web, slug, ids)).json()


def accept(web: httpx.Client, slug: str, ids: dict[str, str]) -> httpx.Response:
    """The page's accept once the participant agreed to the study's consent text."""
    consent = agreed_consent(web, slug)
    return web.post(f"/api/prolific/{slug}/accept", json={**ids, "consent_sha256": consent})


def take_part(
    prolific_site: httpx.Client,
    web: httpx.Client,
    *,
    study_id: str,
    participant_id: str,
    choose: Callable[[bytes], int],
    response_ms: int = 700,
    complete: bool = True,
) -> Participation:
    """`participant_id` takes part in Prolific study `study_id`: `prolific_site` is a client on
    the fake (it keeps the participant's login cookie), `web` one on the live study server."""
    started = _ok(
        "start on Prolific",
        prolific_site.post(
            "/_participant/start", json={"study_id": study_id, "participant_id": participant_id}
        ),
    )
    slug, ids, accepted = open_study(web, started.json()["url"])
    images, labels = label_and_submit(web, accepted, ids, choose=choose, response_ms=response_ms)
    completion = None
    if complete:
        done = _ok("completion URL", web.post(f"/api/prolific/{slug}/complete", json=ids))
        completion = done.json()["completion_url"]
        _ok("completion page", prolific_site.get(completion))
    return Participation(participant_id, ids["session_id"], study_id, images, labels, completion)
