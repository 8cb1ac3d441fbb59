"""Refusals the study operations raise; the web layer turns each into its HTTP status.

Each carries a reason meant for the person who sent the request (a worker, an admin, a
script): it names what was wrong, never internal details.
"""

from __future__ import annotations


class StudyError(Exception):
    """A request the study cannot honour. `status` is the HTTP status it maps to;
    `retry_after` (seconds), when set, says the same request may succeed later."""

    status = 400

    def __init__(self, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class NotFoundError(StudyError):
    status = 404


class ForbiddenError(StudyError):
    status = 403


class ConflictError(StudyError):
    status = 409


class InvalidInputError(StudyError):
    status = 422


class LimitReached(StudyError):
    """A client holds or asks for more than the limits allow (always with `retry_after`)."""

    status = 429


class ImportRefused(StudyError):
    """A bundle that cannot become a study (bad slug, slug taken, already imported elsewhere)."""
