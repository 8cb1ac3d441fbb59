"""What can go wrong talking to Prolific, as a small hierarchy keyed on the HTTP status.

Prolific answers a refusal with a 4xx/5xx and a JSON body, in one of the shapes its own CLI
reads: ``{"error": {"status", "title", "detail", ...}}``, ``{"detail": ...}`` or
``{"message", "detail"}``. `from_response` keeps Prolific's own words (the detail, as sent)
in the message, adds what to do, and picks the class by status, never by parsing the text.

A missing token is not Prolific's refusal but the caller's omission: `MissingToken` is bad
input (exit 2); every `ProlificError` is a refusal or failure of the service (exit 1).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from contract.cli import UsageError


class MissingToken(UsageError):
    """No API token in the environment (ADVCRITIC_PROLIFIC_TOKEN or PROLIFIC_TOKEN)."""


class ProlificError(Exception):
    """Anything Prolific refused or failed; the message is fit to show as it is."""

    def __init__(self, message: str, *, status: int | None = None, operation: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.operation = operation


class BadToken(ProlificError):
    """401: the token is unknown, revoked or mistyped."""


class Forbidden(ProlificError):
    """403: the token may not do this (another workspace's study, a role without rights)."""


class NotFound(ProlificError):
    """404: no such study, submission, group or workspace (for this token)."""


class RequestRejected(ProlificError):
    """400/409/422: Prolific refused the request as invalid or in the wrong state."""


class Throttled(ProlificError):
    """429 after every retry."""


class ServiceFault(ProlificError):
    """5xx after every retry (or once, for a request that must not be repeated)."""


class Unreachable(ProlificError):
    """No answer: network, DNS, a wrong ADVCRITIC_PROLIFIC_API_URL."""


class OutcomeUnknown(ProlificError):
    """A request that must not be repeated got no answer: it may or may not have happened."""


class InsufficientFunds(ProlificError):
    """The workspace's available balance does not cover what is about to be spent."""


_BY_STATUS: dict[int, type[ProlificError]] = {
    401: BadToken,
    403: Forbidden,
    404: NotFound,
    429: Throttled,
}
_HINTS: dict[type[ProlificError], str] = {
    BadToken: "check ADVCRITIC_PROLIFIC_TOKEN (Prolific app: Settings -> API token)",
    Forbidden: "check that the token belongs to the workspace that owns the study",
    Throttled: "Prolific kept answering 429 after the retries; wait a minute and run it again",
    ServiceFault: "Prolific had an internal error; running the same command again is safe",
}


def api_text(response: httpx.Response) -> str:
    """Prolific's own explanation in an error answer, whatever its shape."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = error.get("detail")
            title = error.get("title")
            parts = [str(p) for p in (title, detail) if p not in (None, "", [], {})]
            return ": ".join(parts) or json.dumps(error)
        if "detail" in body or "message" in body:
            return ": ".join(str(body[k]) for k in ("message", "detail") if body.get(k))
    return json.dumps(body)[:500]


def from_response(response: httpx.Response, operation: str) -> ProlificError:
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServiceFault if status >= 500 else RequestRejected)
    message = f"Prolific refused {operation} (HTTP {status}): {api_text(response)}"
    hint = _HINTS.get(kind)
    if hint:
        message += f" -- {hint}"
    return kind(message, status=status, operation=operation)
