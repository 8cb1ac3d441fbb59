"""What the markets' simulated workers share (markets/mturk/fake/hit_flow.py,
markets/prolific/fake/participant.py): a step of a person's flow through the live study
server that got an answer their browser would not go on with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


class FlowError(RuntimeError):
    """A step of a simulated worker's flow was refused; `step` names it, `status` is HTTP's."""

    def __init__(self, step: str, response: httpx.Response) -> None:
        super().__init__(f"{step}: HTTP {response.status_code} {response.text[:300]}")
        self.step = step
        self.status = response.status_code


def expect_ok(step: str, response: httpx.Response) -> httpx.Response:
    """`response` when it is a 200, else a `FlowError` naming the step."""
    if response.status_code != 200:
        raise FlowError(step, response)
    return response


def agreed_consent(client: httpx.Client, slug: str) -> str:
    """What a person's page does before the accept: read the study's consent text and agree
    to it; the SHA-256 the accept must carry."""
    return expect_ok("consent", client.get(f"/api/studies/{slug}/consent")).json()["sha256"]


def open_page(client: httpx.Client, url: str, step: str) -> tuple[str, dict[str, str]]:
    """What a browser does with the market's link: open the page (`url` may be absolute; it
    is opened on `client`) and read the study's slug and the market's query parameters."""
    parts = urlsplit(url)
    expect_ok(step, client.get(f"{parts.path}?{parts.query}"))
    params = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return parts.path.rstrip("/").rsplit("/", 1)[-1], params


def label_and_submit(
    client: httpx.Client,
    accepted: dict[str, Any],
    who: dict[str, str],
    *,
    choose: Callable[[bytes], int],
    response_ms: int,
) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """What the page does after the accept: show each image, take the person's label
    (`choose`), submit them all as `who`; the images and labels, once the server stored them."""
    images = tuple(expect_ok("image", client.get(url)).content for url in accepted["item_urls"])
    labels = tuple(choose(image) for image in images)
    items = [
        {"position": p, "label": label, "response_ms": response_ms}
        for p, label in enumerate(labels)
    ]
    stored = expect_ok("submit", client.post(accepted["submit_url"], json={**who, "labels": items}))
    if stored.json().get("status") != "stored":
        raise FlowError("submit (not stored)", stored)
    return images, labels
