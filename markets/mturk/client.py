"""The one place that talks to MTurk's requester API.

Why a wrapper instead of a bare boto3 client:

- the endpoint is chosen in one place, sandbox unless the caller says ``sandbox=False``
  (an ``endpoint_url`` in settings overrides both, for the loopback fake used in tests);
- the boto3 client is built lazily, so commands that never reach MTurk (and `--help`)
  need no credentials;
- boto3's own retries are switched off and replaced by ours: exponential backoff with
  jitter on throttling and service faults, with an injectable `sleep` so tests can see it;
- errors become `mturk.errors.MTurkError` subclasses keyed on the AWS error code;
- results are `mturk.records` dataclasses, so PascalCase stops here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from markets.mturk import errors
from markets.mturk.records import (
    ASSIGNMENT_STATUSES,
    Assignment,
    Balance,
    BonusPayment,
    Hit,
    HitTypeSpec,
    NotifyFailure,
)
from study_server.settings import MTURK_LIVE_ENDPOINT, MTURK_SANDBOX_ENDPOINT, MTurkSettings

PAGE_SIZE = 100  # MTurk's maximum for list operations
# A time in the past: MTurk's documented way to expire a HIT immediately.
EXPIRE_NOW = datetime(2015, 1, 1, tzinfo=UTC)


class MTurkClient:
    """Requester operations for one marketplace (sandbox or live)."""

    def __init__(
        self,
        settings: MTurkSettings,
        *,
        sandbox: bool = True,
        profile: str | None = None,
        session: boto3.session.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
    ) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self._profile = profile
        self._session = session
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s

    @property
    def endpoint_url(self) -> str:
        if self.settings.endpoint_url:
            return self.settings.endpoint_url
        return MTURK_SANDBOX_ENDPOINT if self.sandbox else MTURK_LIVE_ENDPOINT

    @property
    def marketplace(self) -> str:
        return "sandbox" if self.sandbox else "LIVE"

    @cached_property
    def _boto(self) -> Any:
        session = self._session or boto3.session.Session(profile_name=self._profile)
        config = Config(
            region_name=self.settings.region,
            retries={"total_max_attempts": 1},  # retrying is ours (see _call)
            connect_timeout=10,
            read_timeout=30,
        )
        return session.client("mturk", endpoint_url=self.endpoint_url, config=config)

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a boto3 method, retrying throttling/faults with backoff, translating errors."""
        attempt = 0
        while True:
            try:
                return getattr(self._boto, method)(**params)
            except ClientError as error:
                translated = errors.translate(error)
                if (
                    not isinstance(translated, errors.RETRYABLE)
                    or attempt >= self.settings.max_retries
                ):
                    raise translated from error
            except (NoCredentialsError, PartialCredentialsError) as error:
                raise errors.BadCredentials(
                    f"no usable AWS credentials for MTurk ({error}); set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or pass --profile"
                ) from error
            except BotoConnectionError as error:
                raise errors.EndpointUnreachable(
                    f"cannot reach MTurk at {self.endpoint_url}: {error}"
                ) from error
            self._sleep(self._backoff_delay(attempt))
            attempt += 1

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': between half and all of base * 2**attempt."""
        ceiling = min(self._backoff_cap_s, self._backoff_base_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _pages(self, method: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self._call(
                method, MaxResults=PAGE_SIZE, **params, **({"NextToken": token} if token else {})
            )
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return

    # -- account -------------------------------------------------------------------------

    def balance(self) -> Balance:
        return Balance.from_api(self._call("get_account_balance"))

    # -- HITs ----------------------------------------------------------------------------

    def create_hit_type(self, spec: HitTypeSpec) -> str:
        """The HIT type id for `spec` (MTurk returns the same id for identical properties)."""
        return self._call("create_hit_type", **spec.to_api())["HITTypeId"]

    def create_hit(
        self,
        *,
        hit_type_id: str,
        question: str,
        lifetime_s: int,
        annotation: str,
        unique_request_token: str,
        max_assignments: int = 1,
    ) -> Hit:
        response = self._call(
            "create_hit_with_hit_type",
            HITTypeId=hit_type_id,
            MaxAssignments=max_assignments,
            LifetimeInSeconds=lifetime_s,
            Question=question,
            RequesterAnnotation=annotation,
            UniqueRequestToken=unique_request_token,
        )
        return Hit.from_api(response["HIT"])

    def iter_hits(self) -> Iterator[Hit]:
        for data in self._pages("list_hits", "HITs"):
            yield Hit.from_api(data)

    def get_hit(self, hit_id: str) -> Hit:
        return Hit.from_api(self._call("get_hit", HITId=hit_id)["HIT"])

    def expire_hit(self, hit_id: str) -> None:
        self._call("update_expiration_for_hit", HITId=hit_id, ExpireAt=EXPIRE_NOW)

    # -- assignments ---------------------------------------------------------------------

    def iter_assignments(
        self, hit_id: str, statuses: tuple[str, ...] = ASSIGNMENT_STATUSES
    ) -> Iterator[Assignment]:
        for data in self._pages(
            "list_assignments_for_hit",
            "Assignments",
            HITId=hit_id,
            AssignmentStatuses=list(statuses),
        ):
            yield Assignment.from_api(data)

    def approve(self, assignment_id: str, feedback: str | None = None) -> None:
        params: dict[str, Any] = {"AssignmentId": assignment_id}
        if feedback:
            params["RequesterFeedback"] = feedback
        self._call("approve_assignment", **params)

    def reject(self, assignment_id: str, feedback: str) -> None:
        self._call("reject_assignment", AssignmentId=assignment_id, RequesterFeedback=feedback)

    # -- bonuses and messages ------------------------------------------------------------

    def send_bonus(
        self,
        *,
        worker_id: str,
        assignment_id: str,
        amount: Decimal,
        reason: str,
        unique_request_token: str,
    ) -> None:
        self._call(
            "send_bonus",
            WorkerId=worker_id,
            AssignmentId=assignment_id,
            BonusAmount=f"{amount:.2f}",
            Reason=reason,
            UniqueRequestToken=unique_request_token,
        )

    def iter_bonus_payments(self, assignment_id: str) -> Iterator[BonusPayment]:
        for data in self._pages("list_bonus_payments", "BonusPayments", AssignmentId=assignment_id):
            yield BonusPayment.from_api(data)

    def notify_workers(
        self, *, subject: str, text: str, worker_ids: list[str]
    ) -> list[NotifyFailure]:
        """One NotifyWorkers call (at most 100 workers); the workers it could not reach."""
        response = self._call(
            "notify_workers", Subject=subject, MessageText=text, WorkerIds=worker_ids
        )
        return [NotifyFailure.from_api(f) for f in response.get("NotifyWorkersFailureStatuses", [])]

    # -- qualifications ------------------------------------------------------------------

    def find_qualification_type(self, name: str) -> str | None:
        """The id of the requester's own qualification type called exactly `name`, if any."""
        for data in self._pages(
            "list_qualification_types",
            "QualificationTypes",
            Query=name,
            MustBeRequestable=False,
            MustBeOwnedByCaller=True,
        ):
            if data.get("Name") == name:
                return data["QualificationTypeId"]
        return None

    def ensure_qualification_type(self, name: str, description: str) -> str:
        """Find the qualification type by name or create it; safe to call on every run."""
        existing = self.find_qualification_type(name)
        if existing:
            return existing
        try:
            response = self._call(
                "create_qualification_type",
                Name=name,
                Description=description,
                QualificationTypeStatus="Active",
            )
        except (errors.DuplicateQualificationType, errors.RequestRejected):
            # Created between our lookup and our create, or MTurk's search index lagged;
            # whatever the error code, the type existing by now settles it.
            found = self.find_qualification_type(name)
            if found is None:
                raise
            return found
        return response["QualificationType"]["QualificationTypeId"]

    def grant_qualification(
        self, qualification_type_id: str, worker_id: str, value: int = 1
    ) -> None:
        self._call(
            "associate_qualification_with_worker",
            QualificationTypeId=qualification_type_id,
            WorkerId=worker_id,
            IntegerValue=value,
            SendNotification=False,
        )

    def iter_qualified_workers(self, qualification_type_id: str) -> Iterator[str]:
        for data in self._pages(
            "list_workers_with_qualification_type",
            "Qualifications",
            QualificationTypeId=qualification_type_id,
            Status="Granted",
        ):
            yield data["WorkerId"]
