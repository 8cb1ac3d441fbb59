"""The fake's state and operations: studies, submissions, participant groups, bonuses, money.

Operations take and return the JSON-shaped dicts of Prolific's API (snake_case, ISO times,
money in minor units) and raise `FakeError` with the status Prolific would send. The fake
reads request bodies by Prolific's field names itself, independently of the client's models,
so a misnamed field on our side fails here. The behaviours the `prolific` command relies on
are modelled, not stubbed:

- studies are created UNPUBLISHED, and PUBLISH reserves the cost (rewards, the service fee
  and VAT, as the cost calculator quotes) from the workspace's available balance, refusing
  when it does not cover it; PAUSE / START / STOP move the status as on Prolific;
- a participant starts a submission only on an ACTIVE study with a free place, once per
  study, never while in a blocklisted participant group or after a blocklisted study; the
  study URL gets their PROLIFIC_PID, STUDY_ID and SESSION_ID (= the submission id);
- Prolific's completion URL with the right code moves their submission to AWAITING REVIEW;
  RETURNED, TIMED-OUT and REJECTED submissions free their place for someone else;
- APPROVE / REJECT only from AWAITING REVIEW; a rejection needs one of the categories and a
  message of 100 characters; bulk approval refuses the whole batch if one id cannot be;
- a bulk bonus is created unpaid and paid by a separate call that pays again if repeated
  (as Prolific documents), which `bulk_bonus_payments` lets a test count;
- faults (429 with Retry-After, 5xx) can be injected, and an answer can be "lost" after the
  work was done, to test retries and exactly-once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from markets.prolific.models import REJECTION_CATEGORIES

# Submissions holding a place (the others gave it back).
HOLDING = frozenset({"RESERVED", "ACTIVE", "AWAITING REVIEW", "APPROVED"})
FILTERS = frozenset(
    {"participant_group_blocklist", "participant_group_allowlist", "previous_studies_blocklist"}
)
CENT = Decimal("0.01")


class FakeError(Exception):
    """An error answer: HTTP status, a title and Prolific's detail."""

    def __init__(self, status: int, detail: Any, title: str = "") -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.title = title or {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
            status, "Error"
        )


@dataclass
class _Study:
    id: str
    body: dict[str, Any]
    created: datetime
    status: str = "UNPUBLISHED"
    published: datetime | None = None

    @property
    def code(self) -> str:
        return next(c["code"] for c in self.body["completion_codes"])

    def filter_values(self, filter_id: str) -> list[str]:
        return [
            value
            for f in self.body.get("filters") or []
            if f.get("filter_id") == filter_id
            for value in f.get("selected_values") or []
        ]


@dataclass
class _Submission:
    id: str
    study_id: str
    participant_id: str
    started: datetime
    status: str = "ACTIVE"
    completed: datetime | None = None
    study_code: str | None = None
    review: dict[str, str] = field(default_factory=dict)


@dataclass
class _Group:
    id: str
    name: str
    workspace_id: str
    description: str
    members: dict[str, datetime] = field(default_factory=dict)


@dataclass
class _Bulk:
    id: str
    study_id: str
    entries: list[tuple[str, Decimal]]
    amount: Decimal
    fees: Decimal
    vat: Decimal
    times_paid: int = 0

    @property
    def total(self) -> Decimal:
        return self.amount + self.fees + self.vat


def _minor(amount: Decimal) -> float:
    return float(amount * 100)


class FakeProlific:
    """In-memory Prolific for one workspace plus its participants. Thread-safe (one lock)."""

    def __init__(
        self,
        *,
        token: str = "fake-prolific-token",
        workspace_id: str = "6650f00000000000000000aa",
        balance: Decimal | str = "10000.00",
        currency: str = "GBP",
        fee_fraction: Decimal | str = "0.333",
        vat_fraction: Decimal | str = "0",
        page_size: int = 20,
        seed: int = 0,
    ) -> None:
        self.tokens = {token}
        self.workspace_id = workspace_id
        self.currency = currency
        self.fee_fraction = Decimal(fee_fraction)
        self.vat_fraction = Decimal(vat_fraction)
        self.page_size = page_size
        self._available = Decimal(balance)
        self._total = Decimal(balance)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._studies: dict[str, _Study] = {}
        self._submissions: dict[str, _Submission] = {}
        self._groups: dict[str, _Group] = {}
        self._bulks: dict[str, _Bulk] = {}
        self.participants: set[str] = set()
        self.calls: list[str] = []
        self._faults: list[tuple[int, float | None]] = []
        self._lose_answer_of: set[str] = set()
        self._offset = timedelta()

    # -- test controls -------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def new_id(self) -> str:
        """A Prolific-style id: 24 lower-case hexadecimal characters."""
        with self._lock:
            return f"{self._rng.getrandbits(96):024x}"

    def inject_faults(self, *statuses: int, retry_after: float | None = None) -> None:
        """The next API calls answer these statuses (429, 500, 503...), one each, in order."""
        with self._lock:
            self._faults.extend((status, retry_after) for status in statuses)

    def lose_answer_of(self, operation: str) -> None:
        """Do the next `operation` (e.g. "create_study"), then answer 503 as if it failed."""
        with self._lock:
            self._lose_answer_of.add(operation)

    def take_fault(self) -> tuple[int, float | None] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def answer_lost(self, operation: str) -> bool:
        with self._lock:
            if operation in self._lose_answer_of:
                self._lose_answer_of.discard(operation)
                return True
            return False

    def calls_of(self, operation: str) -> int:
        return sum(1 for name in self.calls if name == operation)

    def set_balance(self, amount: Decimal | str) -> None:
        with self._lock:
            self._available = self._total = Decimal(amount)

    def study(self, study_id: str) -> dict[str, Any]:
        with self._lock:
            return self._study_view(self._study(study_id))

    def submission(self, submission_id: str) -> dict[str, Any]:
        with self._lock:
            return self._submission_view(self._submission(submission_id))

    def bulk_bonus_payments(self, bulk_id: str) -> int:
        """How many times the bulk bonus was paid (more than once = paid twice)."""
        with self._lock:
            return self._bulks[bulk_id].times_paid

    def group_members(self, group_id: str) -> set[str]:
        with self._lock:
            return set(self._groups[group_id].members)

    def time_out(self, submission_id: str) -> None:
        """The participant ran out of Prolific's maximum time."""
        with self._lock:
            self._submission(submission_id).status = "TIMED-OUT"

    def check_token(self, header: str | None) -> None:
        scheme, _, token = (header or "").partition(" ")
        if scheme != "Token" or token not in self.tokens:
            raise FakeError(401, "Invalid token.")

    # -- money ---------------------------------------------------------------------------

    def _cost(self, reward_minor: Any, places: Any) -> Decimal:
        reward, count = _positive_int(reward_minor, "reward"), _positive_int(places, "places")
        rewards = Decimal(reward) / 100 * count
        fee = (rewards * self.fee_fraction).quantize(CENT, rounding=ROUND_HALF_UP)
        vat = (fee * self.vat_fraction).quantize(CENT, rounding=ROUND_HALF_UP)
        return rewards + fee + vat

    def quote(self, body: dict[str, Any]) -> dict[str, Any]:
        cost = self._cost(body.get("reward"), body.get("total_available_places"))
        return {"total_cost": _minor(cost)}

    def balance(self, workspace_id: str) -> dict[str, Any]:
        with self._lock:
            if workspace_id != self.workspace_id:
                raise FakeError(404, f"Workspace {workspace_id} not found.")
            return {
                "currency_code": self.currency,
                "total_balance": int(self._total * 100),
                "balance_breakdown": {"rewards": int(self._total * 100), "fees": 0, "vat": 0},
                "available_balance": int(self._available * 100),
                "available_balance_breakdown": {
                    "rewards": int(self._available * 100),
                    "fees": 0,
                    "vat": 0,
                },
            }

    # -- studies -------------------------------------------------------------------------

    def create_study(self, body: dict[str, Any]) -> dict[str, Any]:
        required = (
            "name",
            "description",
            "external_study_url",
            "prolific_id_option",
            "completion_codes",
            "total_available_places",
            "estimated_completion_time",
            "reward",
            "device_compatibility",
        )
        missing = [name for name in required if body.get(name) in (None, "", [])]
        if missing:
            raise FakeError(400, {name: ["This field is required."] for name in missing})
        url = str(body["external_study_url"])
        if urlsplit(url).scheme not in ("http", "https"):
            raise FakeError(400, {"external_study_url": ["Enter a valid URL."]})
        if body["prolific_id_option"] == "url_parameters" and "{{%PROLIFIC_PID%}}" not in url:
            raise FakeError(400, {"external_study_url": ["The URL must pass {{%PROLIFIC_PID%}}."]})
        for code in body["completion_codes"]:
            if not code.get("code") or not code.get("code_type") or not code.get("actions"):
                raise FakeError(400, {"completion_codes": ["code, code_type and actions."]})
        self._cost(body["reward"], body["total_available_places"])  # both positive integers
        with self._lock:
            for item in body.get("filters") or []:
                self._check_filter(item)
            study = _Study(id=self.new_id(), body=dict(body), created=self.now())
            self._studies[study.id] = study
            return self._study_view(study)

    def _check_filter(self, item: dict[str, Any]) -> None:
        if item.get("filter_id") not in FILTERS:
            raise FakeError(400, {"filters": [f"Unknown filter {item.get('filter_id')!r}."]})
        for value in item.get("selected_values") or []:
            known = self._groups if "group" in item["filter_id"] else self._studies
            if value not in known:
                raise FakeError(400, {"filters": [f"{value} does not exist."]})

    def list_studies(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._study_view(s)
                for s in self._studies.values()
                if project_id is None or s.body.get("project") == project_id
            ]

    def get_study(self, study_id: str) -> dict[str, Any]:
        return self.study(study_id)

    def transition_study(self, study_id: str, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        allowed = {
            "PUBLISH": ({"UNPUBLISHED"}, "ACTIVE"),
            "PAUSE": ({"ACTIVE"}, "PAUSED"),
            "START": ({"PAUSED"}, "ACTIVE"),
            "STOP": ({"ACTIVE", "PAUSED"}, "COMPLETED"),
        }
        if action not in allowed:
            raise FakeError(400, {"action": [f"{action!r} is not a valid choice."]})
        with self._lock:
            study = self._study(study_id)
            sources, target = allowed[action]
            if study.status not in sources:
                raise FakeError(400, f"Cannot {action} a study that is {study.status}.")
            if action == "PUBLISH":
                cost = self._cost(study.body["reward"], study.body["total_available_places"])
                if cost > self._available:
                    raise FakeError(400, "Your workspace balance is too low to publish this study.")
                self._available -= cost
                study.published = self.now()
            study.status = target
            return self._study_view(study)

    # -- submissions ---------------------------------------------------------------------

    def list_submissions(self, study_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._study(study_id)
            return [
                self._submission_view(s)
                for s in self._submissions.values()
                if s.study_id == study_id
            ]

    def transition_submission(self, submission_id: str, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        with self._lock:
            submission = self._submission(submission_id)
            if action not in ("APPROVE", "REJECT"):
                raise FakeError(400, {"action": [f"{action!r} is not a valid choice."]})
            if submission.status != "AWAITING REVIEW":
                raise FakeError(
                    400, f"Submission {submission_id} is {submission.status}, not AWAITING REVIEW."
                )
            if action == "REJECT":
                message = str(body.get("message") or "")
                category = body.get("rejection_category")
                if len(message) < 100:
                    raise FakeError(400, {"message": ["At least 100 characters."]})
                if category not in REJECTION_CATEGORIES:
                    raise FakeError(400, {"rejection_category": [f"{category!r} is not valid."]})
                submission.review = {"message": message, "rejection_category": str(category)}
            submission.status = "APPROVED" if action == "APPROVE" else "REJECTED"
            view = self._submission_view(submission)
            return {**view, "participant": view["participant_id"], "study_id": view["study_id"]}

    def bulk_approve(self, body: dict[str, Any]) -> None:
        ids = body.get("submission_ids") or []
        with self._lock:
            chosen = [self._submission(i) for i in ids]
            wrong = [s.id for s in chosen if s.status != "AWAITING REVIEW"]
            if not ids or wrong:
                raise FakeError(400, f"Submissions not awaiting review: {wrong or 'none given'}")
            if any(s.study_id != body.get("study_id") for s in chosen):
                raise FakeError(400, "Every submission must belong to study_id.")
            for submission in chosen:
                submission.status = "APPROVED"

    # -- bonuses -------------------------------------------------------------------------

    def create_bonuses(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            study = self._study(str(body.get("study_id")))
            entries = []
            for line in str(body.get("csv_bonuses") or "").strip().splitlines():
                participant, _, raw = line.partition(",")
                try:
                    amount = Decimal(raw.strip())
                except InvalidOperation as error:
                    raise FakeError(400, f"Invalid bonus line {line!r}.") from error
                taken = any(
                    s.participant_id == participant.strip() and s.study_id == study.id
                    for s in self._submissions.values()
                )
                if not taken or amount <= 0:
                    raise FakeError(400, f"Invalid bonus line {line!r}.")
                entries.append((participant.strip(), amount))
            if not entries:
                raise FakeError(400, {"csv_bonuses": ["This field is required."]})
            amount = sum((a for _, a in entries), Decimal(0))
            fees = (amount * self.fee_fraction).quantize(CENT, rounding=ROUND_HALF_UP)
            vat = (fees * self.vat_fraction).quantize(CENT, rounding=ROUND_HALF_UP)
            bulk = _Bulk(self.new_id(), study.id, entries, amount, fees, vat)
            self._bulks[bulk.id] = bulk
            return {
                "id": bulk.id,
                "study": study.id,
                "amount": _minor(amount),
                "fees": _minor(fees),
                "vat": _minor(vat),
                "total_amount": _minor(bulk.total),
            }

    def pay_bonuses(self, bulk_id: str) -> None:
        with self._lock:
            bulk = self._bulks.get(bulk_id)
            if bulk is None:
                raise FakeError(404, f"Bulk bonus payment {bulk_id} not found.")
            if bulk.total > self._available:
                raise FakeError(400, "Your workspace balance is too low to pay these bonuses.")
            self._available -= bulk.total
            self._total -= bulk.total
            bulk.times_paid += 1  # not idempotent, as on Prolific

    # -- participant groups --------------------------------------------------------------

    def list_groups(self, workspace_id: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._group_view(g)
                for g in self._groups.values()
                if workspace_id in (None, g.workspace_id)
            ]

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("name") or body.get("workspace_id") != self.workspace_id:
            raise FakeError(400, "A name and this token's workspace_id are required.")
        with self._lock:
            group = _Group(
                self.new_id(), body["name"], body["workspace_id"], body.get("description") or ""
            )
            self._groups[group.id] = group
            self._add(group, body.get("participant_ids") or [])
            return self._group_view(group)

    def group_participants(self, group_id: str) -> list[dict[str, Any]]:
        with self._lock:
            group = self._group(group_id)
            return [
                {"participant_id": pid, "datetime_created": when.isoformat()}
                for pid, when in group.members.items()
            ]

    def add_to_group(self, group_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            self._add(self._group(group_id), body.get("participant_ids") or [])
            return self.group_participants(group_id)

    def _add(self, group: _Group, participant_ids: list[str]) -> None:
        unknown = [p for p in participant_ids if p not in self.participants]
        if unknown:
            raise FakeError(400, f"Participants do not exist: {', '.join(unknown)}.")
        for participant in participant_ids:
            group.members.setdefault(participant, self.now())

    # -- the participants' side ----------------------------------------------------------

    def start(self, study_id: str, participant_id: str) -> tuple[str, str]:
        """A participant takes a place: (their submission id, the study URL they open)."""
        with self._lock:
            study = self._study(study_id)
            if study.status != "ACTIVE":
                raise FakeError(409, f"Study {study_id} is {study.status}, not open.")
            mine = [s for s in self._submissions.values() if s.study_id == study_id]
            if any(s.participant_id == participant_id for s in mine):
                raise FakeError(409, "You have already taken part in this study.")
            if sum(1 for s in mine if s.status in HOLDING) >= int(
                study.body["total_available_places"]
            ):
                raise FakeError(409, "This study is full.")
            for group_id in study.filter_values("participant_group_blocklist"):
                if participant_id in self._groups[group_id].members:
                    raise FakeError(403, "You are not eligible for this study (blocklist).")
            for other in study.filter_values("previous_studies_blocklist"):
                if any(
                    s.participant_id == participant_id and s.study_id == other
                    for s in self._submissions.values()
                ):
                    raise FakeError(403, "You are not eligible for this study (previous study).")
            self.participants.add(participant_id)
            submission = _Submission(self.new_id(), study_id, participant_id, self.now())
            self._submissions[submission.id] = submission
            url = str(study.body["external_study_url"])
            for name, value in (
                ("PROLIFIC_PID", participant_id),
                ("STUDY_ID", study_id),
                ("SESSION_ID", submission.id),
            ):
                url = url.replace(f"{{{{%{name}%}}}}", value)
            return submission.id, url

    def complete(self, participant_id: str, code: str) -> str:
        """Prolific's completion URL, opened by the participant: their submission id."""
        with self._lock:
            for submission in self._submissions.values():
                study = self._studies[submission.study_id]
                if (
                    submission.participant_id == participant_id
                    and submission.status == "ACTIVE"
                    and study.code == code
                ):
                    submission.status = "AWAITING REVIEW"
                    submission.completed = self.now()
                    submission.study_code = code
                    return submission.id
            raise FakeError(400, "No study of yours in progress has this completion code.")

    def return_submission(self, submission_id: str) -> None:
        """The participant returns their submission (the place opens for someone else)."""
        with self._lock:
            submission = self._submission(submission_id)
            if submission.status not in ("ACTIVE", "AWAITING REVIEW"):
                raise FakeError(409, f"Submission {submission_id} is {submission.status}.")
            submission.status = "RETURNED"

    # -- views ---------------------------------------------------------------------------

    def _study(self, study_id: str) -> _Study:
        study = self._studies.get(study_id)
        if study is None:
            raise FakeError(404, f"Study {study_id} not found.")
        return study

    def _submission(self, submission_id: str) -> _Submission:
        submission = self._submissions.get(submission_id)
        if submission is None:
            raise FakeError(404, f"Submission {submission_id} not found.")
        return submission

    def _group(self, group_id: str) -> _Group:
        group = self._groups.get(group_id)
        if group is None:
            raise FakeError(404, f"Participant group {group_id} not found.")
        return group

    def _study_view(self, study: _Study) -> dict[str, Any]:
        taken = sum(
            1 for s in self._submissions.values() if s.study_id == study.id and s.status in HOLDING
        )
        return {
            **study.body,
            "id": study.id,
            "status": study.status,
            "places_taken": taken,
            "date_created": study.created.isoformat(),
            "published_at": study.published.isoformat() if study.published else None,
            "currency_code": self.currency,
            "total_cost": _minor(
                self._cost(study.body["reward"], study.body["total_available_places"])
            ),
        }

    def _submission_view(self, submission: _Submission) -> dict[str, Any]:
        return {
            "id": submission.id,
            "study_id": submission.study_id,
            "participant_id": submission.participant_id,
            "status": submission.status,
            "started_at": submission.started.isoformat(),
            "completed_at": submission.completed.isoformat() if submission.completed else None,
            "study_code": submission.study_code,
            "is_complete": submission.status in ("AWAITING REVIEW", "APPROVED"),
            "bonus_payments": [
                _minor(amount)
                for bulk in self._bulks.values()
                if bulk.times_paid
                for participant, amount in bulk.entries
                if participant == submission.participant_id and bulk.study_id == submission.study_id
            ],
        }

    def _group_view(self, group: _Group) -> dict[str, Any]:
        return {
            "id": group.id,
            "name": group.name,
            "workspace_id": group.workspace_id,
            "description": group.description,
            "participant_count": len(group.members),
        }


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FakeError(400, {name: [f"A positive integer (minor units), got {value!r}."]})
    return value
