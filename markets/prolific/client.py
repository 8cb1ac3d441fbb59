"""The one place that talks to Prolific's REST API (`https://api.prolific.com/api/v1/`).

- httpx, with the token as ``Authorization: Token <token>``; the base URL is a setting
  (tests and rehearsals point it at `markets.prolific.fake`). The HTTP client is made on the
  first call, so `--help` and the commands that never reach Prolific need no token.
- Retries with exponential backoff and jitter (`Retry-After` honoured) on 429, which Prolific
  sends before doing anything, and, for requests that are safe to repeat, on 5xx and lost
  connections. Creating a study, a bonus or a group and paying bonuses are not repeated
  blindly: a lost answer there is `OutcomeUnknown`, and the caller looks for what it made
  (publish finds its study by internal name) instead of making it twice.
- Answers are parsed into `markets.prolific.models`; refusals become `errors.ProlificError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from markets.prolific import errors
from markets.prolific.models import (
    BonusCreate,
    BulkApprove,
    BulkBonus,
    CostQuote,
    CostQuoteRequest,
    GroupMember,
    ParticipantGroup,
    ParticipantGroupCreate,
    ParticipantIds,
    Study,
    StudyAction,
    StudyCreate,
    StudyTransition,
    Submission,
    SubmissionTransition,
    WorkspaceBalance,
    next_page,
)
from study_server.settings import ProlificSettings

API = "/api/v1"
PAGE_SIZE = 100
M = TypeVar("M", bound=BaseModel)


class ProlificClient:
    """Prolific's researcher API for one token (one workspace's money)."""

    def __init__(
        self,
        settings: ProlificSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s

    @cached_property
    def _http(self) -> httpx.Client:
        token = self.settings.token.get_secret_value() if self.settings.token else ""
        if not token.strip():
            raise errors.MissingToken(
                "no Prolific API token: set ADVCRITIC_PROLIFIC_TOKEN (or PROLIFIC_TOKEN) to a "
                "token made in the Prolific app (Settings -> API token)"
            )
        return httpx.Client(
            base_url=self.settings.api_url.rstrip("/"),
            headers={"Authorization": f"Token {token.strip()}", "Accept": "application/json"},
            timeout=self.settings.timeout_s,
            transport=self._transport,
        )

    def close(self) -> None:
        if "_http" in self.__dict__:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
        repeatable: bool = True,
    ) -> Any:
        """One request, retried as the module says; the parsed JSON answer (None if empty)."""
        payload = body.model_dump(mode="json", exclude_none=True) if body is not None else None
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=payload, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # nothing was sent
                if attempt >= self.settings.max_retries:
                    raise errors.Unreachable(
                        f"cannot reach Prolific at {self.settings.api_url} ({operation}): {error}"
                    ) from error
                delay = self._backoff_delay(attempt)
            except httpx.TransportError as error:  # sent, answer lost
                if not repeatable:
                    raise errors.OutcomeUnknown(
                        f"no answer from Prolific to {operation} ({error}); it may or may not "
                        "have happened: check in the Prolific app before doing it again",
                        operation=operation,
                    ) from error
                if attempt >= self.settings.max_retries:
                    raise errors.Unreachable(
                        f"no answer from Prolific at {self.settings.api_url} ({operation}): {error}"
                    ) from error
                delay = self._backoff_delay(attempt)
            else:
                status = response.status_code
                if status < 400:
                    return response.json() if response.content else None
                retry = status == 429 or (status >= 500 and repeatable)
                if not retry or attempt >= self.settings.max_retries:
                    raise errors.from_response(response, operation)
                delay = self._retry_after(response) or self._backoff_delay(attempt)
            self._sleep(delay)
            attempt += 1

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': between half and all of base * 2**attempt."""
        ceiling = min(self._backoff_cap_s, self._backoff_base_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After", "")
        try:
            return min(self._backoff_cap_s, max(0.0, float(value)))
        except ValueError:
            return None

    def _get(self, path: str, model: type[M], operation: str, **params: Any) -> M:
        return model.model_validate(self._call("GET", path, operation, params=params or None))

    def _pages(self, path: str, model: type[M], operation: str, **params: Any) -> Iterator[M]:
        """Every item of a list endpoint, following `_links.next` to the end."""
        seen: set[str] = set()
        url: str | None = path
        query: dict[str, Any] | None = params or None
        while url:
            data = self._call("GET", url, operation, params=query)
            if isinstance(data, list):  # some list endpoints answer a bare list
                yield from (model.model_validate(item) for item in data)
                return
            yield from (model.model_validate(item) for item in data.get("results") or [])
            url, query = next_page(data), None  # the next link carries its own query
            if url in seen:
                return
            seen.add(url or "")

    # -- workspace -----------------------------------------------------------------------

    def balance(self, workspace_id: str) -> WorkspaceBalance:
        return self._get(f"{API}/workspaces/{workspace_id}/balance/", WorkspaceBalance, "balance")

    def quote(self, *, reward_minor: int, places: int) -> CostQuote | None:
        """Prolific's own total for a study (fees and VAT included), or None where the
        calculator does not answer."""
        body = CostQuoteRequest(reward=reward_minor, total_available_places=places)
        try:
            data = self._call("POST", f"{API}/study-cost-calculator/", "quote", body=body)
        except errors.NotFound:
            return None
        return CostQuote.model_validate(data)

    # -- studies -------------------------------------------------------------------------

    def iter_studies(self, project_id: str | None = None) -> Iterator[Study]:
        path = f"{API}/projects/{project_id}/studies/" if project_id else f"{API}/studies/"
        return self._pages(path, Study, "list studies")

    def find_study(self, internal_name: str, project_id: str | None = None) -> Study | None:
        """The study with this internal name (ours are unique by construction), if any."""
        return next(
            (s for s in self.iter_studies(project_id) if s.internal_name == internal_name), None
        )

    def create_study(self, study: StudyCreate) -> Study:
        data = self._call("POST", f"{API}/studies/", "create study", body=study, repeatable=False)
        return Study.model_validate(data)

    def get_study(self, study_id: str) -> Study:
        return self._get(f"{API}/studies/{study_id}/", Study, f"get study {study_id}")

    def transition_study(self, study_id: str, action: StudyAction) -> Study:
        data = self._call(
            "POST",
            f"{API}/studies/{study_id}/transition/",
            f"{action} study {study_id}",
            body=StudyTransition(action=action),
        )
        return Study.model_validate(data) if data else self.get_study(study_id)

    # -- submissions ---------------------------------------------------------------------

    def iter_submissions(self, study_id: str) -> Iterator[Submission]:
        return self._pages(
            f"{API}/studies/{study_id}/submissions/",
            Submission,
            f"list submissions of study {study_id}",
            page_size=PAGE_SIZE,
        )

    def transition_submission(self, submission_id: str, transition: SubmissionTransition) -> None:
        self._call(
            "POST",
            f"{API}/submissions/{submission_id}/transition/",
            f"{transition.action} submission {submission_id}",
            body=transition,
        )

    def bulk_approve(self, study_id: str, submission_ids: list[str]) -> None:
        self._call(
            "POST",
            f"{API}/submissions/bulk-approve/",
            f"bulk-approve {len(submission_ids)} submission(s)",
            body=BulkApprove(study_id=study_id, submission_ids=submission_ids),
        )

    # -- bonuses -------------------------------------------------------------------------

    def create_bonuses(self, study_id: str, csv_bonuses: str) -> BulkBonus:
        data = self._call(
            "POST",
            f"{API}/submissions/bonus-payments/",
            "create bonus payments",
            body=BonusCreate(study_id=study_id, csv_bonuses=csv_bonuses),
            repeatable=False,
        )
        return BulkBonus.model_validate(data)

    def pay_bonuses(self, bulk_id: str) -> None:
        """Pay a bulk bonus: NOT idempotent on Prolific's side (a second call pays again)."""
        self._call(
            "POST", f"{API}/bulk-bonus-payments/{bulk_id}/pay/", "pay bonuses", repeatable=False
        )

    # -- participant groups --------------------------------------------------------------

    def find_group(self, workspace_id: str, name: str) -> ParticipantGroup | None:
        groups = self._pages(
            f"{API}/participant-groups/",
            ParticipantGroup,
            "list participant groups",
            workspace_id=workspace_id,
        )
        return next((g for g in groups if g.name == name), None)

    def create_group(self, group: ParticipantGroupCreate) -> ParticipantGroup:
        data = self._call(
            "POST",
            f"{API}/participant-groups/",
            "create participant group",
            body=group,
            repeatable=False,
        )
        return ParticipantGroup.model_validate(data)

    def group_members(self, group_id: str) -> set[str]:
        members = self._pages(
            f"{API}/participant-groups/{group_id}/participants/",
            GroupMember,
            f"list participant group {group_id}",
        )
        return {member.participant_id.lower() for member in members}

    def add_to_group(self, group_id: str, participant_ids: list[str]) -> None:
        """Add participants (adding one already there changes nothing, so this repeats)."""
        self._call(
            "POST",
            f"{API}/participant-groups/{group_id}/participants/",
            f"add {len(participant_ids)} participant(s) to group {group_id}",
            body=ParticipantIds(participant_ids=participant_ids),
        )
