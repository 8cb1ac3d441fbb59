"""Addresses: the lab link, the HIT page MTurk opens, and where MTurk takes submissions."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from study_server.errors import InvalidInputError
from study_server.settings import Settings


def lab_url(settings: Settings, slug: str) -> str:
    """The lab page of a study, where a person types the code of a printed invitation."""
    return f"{settings.public_url.rstrip('/')}/lab/{slug}"


def lab_invitation_url(settings: Settings, slug: str, code: str) -> str:
    """The link of one lab invitation: opening it starts labeling (no MTurk involved)."""
    return f"{lab_url(settings, slug)}?{urlencode({'code': code})}"


def hit_url(settings: Settings, slug: str) -> str:
    """The ExternalURL of the study's HITs (MTurk appends assignmentId, hitId, workerId...)."""
    return f"{settings.public_url.rstrip('/')}/hit/{slug}"


def normalized_submit_host(settings: Settings, turk_submit_to: str | None) -> str:
    """`turkSubmitTo` without a trailing slash, if it is one this server may post to."""
    return submit_host_among(settings.turk_submit_hosts, turk_submit_to)


def submit_host_among(hosts: Iterable[str], turk_submit_to: str | None) -> str:
    """`normalized_submit_host` against `hosts` (where the settings do not travel)."""
    allowed = {host.rstrip("/") for host in hosts}
    host = (turk_submit_to or "").rstrip("/")
    if host not in allowed:
        raise InvalidInputError(
            "turkSubmitTo is not an MTurk submission address this server posts to"
        )
    return host
