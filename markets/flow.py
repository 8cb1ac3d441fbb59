"""What the markets' simulated workers share (markets/mturk/fake/hit_flow.py,
markets/prolific/fake/participant.py): a step of a person's flow through the live study
server that got an answer their browser would not go on with."""

from __future__ import annotations

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
