"""Refusals the study operations raise; the web layer turns each into its HTTP status.

Each carries a reason meant for the person who sent the request (a worker, an admin, a
script): it names what was wrong, never internal details.
"""

from __future__ import annotations


class StudyError(Exception):
    """A request the study cannot honour. `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFoundError(StudyError):
    status = 404


class ForbiddenError(StudyError):
    status = 403


class ConflictError(StudyError):
    status = 409


class InvalidInputError(StudyError):
    status = 422


class ImportRefused(StudyError):
    """A bundle that cannot become a study (bad slug, slug taken, already imported elsewhere)."""
