"""Addresses: the lab link, the HIT page MTurk opens, and where MTurk takes submissions."""

from __future__ import annotations

from study_server.errors import InvalidInputError
from study_server.settings import Settings


def lab_url(settings: Settings, slug: str) -> str:
    """The local-mode link a person in a lab opens to label (no MTurk involved)."""
    return f"{settings.public_url.rstrip('/')}/lab/{slug}"


def hit_url(settings: Settings, slug: str) -> str:
    """The ExternalURL of the study's HITs (MTurk appends assignmentId, hitId, workerId...)."""
    return f"{settings.public_url.rstrip('/')}/hit/{slug}"


def normalized_submit_host(settings: Settings, turk_submit_to: str | None) -> str:
    """`turkSubmitTo` without a trailing slash, if it is one this server may post to."""
    allowed = {host.rstrip("/") for host in settings.turk_submit_hosts}
    host = (turk_submit_to or "").rstrip("/")
    if host not in allowed:
        raise InvalidInputError(
            "turkSubmitTo is not an MTurk submission address this server posts to"
        )
    return host
