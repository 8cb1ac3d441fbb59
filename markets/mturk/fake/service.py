"""The fake's state and operations: HIT types, HITs, assignments, qualifications, money.

Operations take and return the JSON-shaped dicts of MTurk's API (PascalCase, epoch-second
timestamps) and raise `Fault` with the error type and TurkErrorCode MTurk would send. The
behaviours that the `mturk` command depends on are modelled, not stubbed:

- ``UniqueRequestToken``: a second CreateHITWithHITType with a token seen in the last 24 hours
  creates nothing and fails with ``AWS.MechanicalTurk.HitAlreadyExists`` (after 24 hours the
  token is forgotten, as MTurk documents, and a duplicate HIT *is* created);
- CreateHITType returns the same id for the same properties;
- ListAssignmentsForHIT lists only submitted work (Submitted/Approved/Rejected);
- approval and rejection only from the states MTurk allows; auto-approval after the delay;
- qualification requirements (built-in approval rate, approved HIT count, locale, and the
  requester's own types with every comparator) are enforced when a worker accepts;
- the prepaid balance is charged reward + fee per assignment and a HIT that does not fit fails
  with ``AWS.MechanicalTurk.InsufficientFunds``;
- bonuses: SendBonus charges bonus + fee, only for a worker's own submitted assignment, and
  a token seen in the last 24 hours pays nothing again (an error naming the earlier request);
  ListBonusPayments lists them per assignment or HIT;
- NotifyWorkers: subject <= 200 and text <= 4,096 characters, 1 to 100 workers a call; a
  worker who never had an assignment approved or rejected by this requester is a HardFailure
  (MTurk only lets you message workers you have worked with);
- throttling and service faults can be injected to test retries.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from markets.mturk.fake.checks import (
    ID_ALPHABET,
    digest_id,
    integer,
    money,
    paginate,
    require,
    text,
)
from markets.mturk.fake.faults import Fault, request_error
from markets.mturk.fake.workers import WorkerProfile, answer_xml, meets, with_query
from markets.mturk.question import QuestionError, parse_external_question
from markets.mturk.records import (
    LOCALE_QUALIFICATION,
    NUMBER_APPROVED_QUALIFICATION,
    PERCENT_APPROVED_QUALIFICATION,
)

TOKEN_MEMORY = timedelta(hours=24)
PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
_COMPARATORS = {
    "LessThan",
    "LessThanOrEqualTo",
    "GreaterThan",
    "GreaterThanOrEqualTo",
    "EqualTo",
    "NotEqualTo",
    "Exists",
    "DoesNotExist",
    "In",
    "NotIn",
}
_LISTED_STATUSES = ("Submitted", "Approved", "Rejected")
NOTIFY_SUBJECT_MAX = 200
NOTIFY_TEXT_MAX = 4096
NOTIFY_WORKERS_MAX = 100


@dataclass
class _HitType:
    hit_type_id: str
    title: str
    description: str
    keywords: str
    reward: Decimal
    duration_s: int
    auto_approval_delay_s: int
    requirements: list[dict[str, Any]]


@dataclass
class _Hit:
    hit_id: str
    hit_type: _HitType
    question: str
    external_url: str
    max_assignments: int
    created: datetime
    expires: datetime
    annotation: str | None
    token: str | None
    cost_per_assignment: Decimal
    released: bool = False  # money of never-taken assignments returned at expiry


@dataclass
class _Assignment:
    assignment_id: str
    hit: _Hit
    worker_id: str
    status: str  # Accepted | Submitted | Approved | Rejected | Returned | Abandoned
    accepted: datetime
    deadline: datetime
    submitted: datetime | None = None
    approved: datetime | None = None
    rejected: datetime | None = None
    answer: str | None = None
    feedback: str | None = None


@dataclass
class _Bonus:
    worker_id: str
    assignment_id: str
    amount: Decimal
    reason: str
    granted: datetime


def _insufficient_funds() -> Fault:
    return request_error(
        "This Requester has insufficient funds in their account to complete this transaction. "
        "Please visit https://requester.mturk.com/account to purchase Prepaid HITs.",
        "AWS.MechanicalTurk.InsufficientFunds",
    )


def _wrong_state(assignment: _Assignment, allowed: tuple[str, ...]) -> Fault:
    return request_error(
        f"This operation can be called with a status of: {', '.join(allowed)} "
        f"(assignment {assignment.assignment_id} is {assignment.status})",
        "AWS.MechanicalTurk.InvalidAssignmentState",
    )


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class FakeMTurk:
    """In-memory MTurk requester service plus the worker side. Thread-safe (one lock)."""

    def __init__(
        self,
        *,
        credentials: dict[str, str] | None = None,
        balance: Decimal | str = "10000.00",
        fee_fraction: Decimal | str = "0.20",
        allow_http_loopback: bool = True,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
    ) -> None:
        self.credentials = dict(credentials or {"AKIDFAKEMTURK0000000": "fake-secret-key"})
        self.region = "us-east-1"
        self.allow_http_loopback = allow_http_loopback
        self._balance = Decimal(balance)
        self._on_hold = Decimal("0.00")
        self._fee = Decimal(fee_fraction)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._hit_types: dict[str, _HitType] = {}
        self._hits: dict[str, _Hit] = {}
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._assignments: dict[str, _Assignment] = {}
        self._qualification_types: dict[str, dict[str, Any]] = {}
        self._bonuses: list[_Bonus] = []
        self._bonus_tokens: dict[str, datetime] = {}
        self.notifications: list[dict[str, Any]] = []
        self.workers: dict[str, WorkerProfile] = {}
        self.calls: list[str] = []
        self._faults: list[Fault] = []
        self.submit_base_url = ""  # set by the HTTP server: where externalSubmit lives

    # -- test controls -------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (expiry, auto-approval, the 24-hour token memory)."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def inject_faults(self, *faults: Fault) -> None:
        """The next API calls fail with these faults, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def throttle_next(self, count: int) -> None:
        self.inject_faults(*(Fault("ThrottlingException", "Rate exceeded") for _ in range(count)))

    def set_balance(self, amount: Decimal | str) -> None:
        with self._lock:
            self._balance = Decimal(amount)

    def bonuses(self) -> list[_Bonus]:
        with self._lock:
            return list(self._bonuses)

    def calls_of(self, operation: str) -> int:
        return sum(1 for name in self.calls if name == operation)

    def hit_ids(self) -> list[str]:
        with self._lock:
            return list(self._hits)

    # -- the API -------------------------------------------------------------------------

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one API operation the way the JSON protocol delivers it."""
        handler = getattr(self, f"_op_{operation}", None)
        with self._lock:
            self.calls.append(operation)
            if handler is None:
                raise Fault("UnknownOperationException", f"Unknown operation {operation}")
            if self._faults:
                raise self._faults.pop(0)
            if not isinstance(params, dict):
                raise Fault("SerializationException", "request body must be a JSON object")
            self._settle()
            return handler(params)

    def _settle(self) -> None:
        """Apply what time did: abandon overdue work, auto-approve, release money of dead HITs."""
        now = self.now()
        for assignment in self._assignments.values():
            if assignment.status == "Accepted" and now >= assignment.deadline:
                assignment.status = "Abandoned"
            elif assignment.status == "Submitted":
                delay = timedelta(seconds=assignment.hit.hit_type.auto_approval_delay_s)
                if assignment.submitted and now >= assignment.submitted + delay:
                    self._pay(assignment, now)

    def _pay(self, assignment: _Assignment, now: datetime) -> None:
        assignment.status = "Approved"
        assignment.approved = now
        self._on_hold -= assignment.hit.cost_per_assignment

    # HIT types and HITs

    def _op_CreateHITType(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "AssignmentDurationInSeconds", "Reward", "Title", "Description")
        reward = money(params["Reward"])
        hit_type = _HitType(
            hit_type_id="",
            title=text(params, "Title", 128),
            description=text(params, "Description", 2000),
            keywords=text(params, "Keywords", 1000, required=False),
            reward=reward,
            duration_s=integer(params, "AssignmentDurationInSeconds", 30, 31_536_000),
            auto_approval_delay_s=integer(
                params, "AutoApprovalDelayInSeconds", 0, 2_592_000, default=2_592_000
            ),
            requirements=[
                self._check_requirement(r) for r in params.get("QualificationRequirements") or []
            ],
        )
        identity = json.dumps({k: v for k, v in params.items()}, sort_keys=True, default=str)
        hit_type.hit_type_id = "3" + digest_id(identity)
        self._hit_types.setdefault(hit_type.hit_type_id, hit_type)
        return {"HITTypeId": hit_type.hit_type_id}

    def _check_requirement(self, requirement: Any) -> dict[str, Any]:
        if not isinstance(requirement, dict):
            raise request_error("QualificationRequirement must be an object")
        require(requirement, "QualificationTypeId", "Comparator")
        type_id, comparator = requirement["QualificationTypeId"], requirement["Comparator"]
        builtin = {
            PERCENT_APPROVED_QUALIFICATION,
            NUMBER_APPROVED_QUALIFICATION,
            LOCALE_QUALIFICATION,
        }
        if type_id not in builtin and type_id not in self._qualification_types:
            raise request_error(
                f"QualificationType {type_id} does not exist.",
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
            )
        if comparator not in _COMPARATORS:
            raise request_error(f"Comparator {comparator!r} is not valid.")
        if comparator not in ("Exists", "DoesNotExist") and not (
            requirement.get("IntegerValues") or requirement.get("LocaleValues")
        ):
            raise request_error(f"Comparator {comparator} needs IntegerValues or LocaleValues.")
        return dict(requirement)

    def _op_CreateHITWithHITType(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "HITTypeId", "LifetimeInSeconds", "Question")
        hit_type = self._hit_types.get(params["HITTypeId"])
        if hit_type is None:
            raise request_error(
                f"HITType {params['HITTypeId']} does not exist.",
                "AWS.MechanicalTurk.HITTypeDoesNotExist",
            )
        now = self.now()
        token = params.get("UniqueRequestToken")
        if token is not None:
            if not isinstance(token, str) or not 1 <= len(token) <= 64:
                raise request_error("UniqueRequestToken must be 1 to 64 characters.")
            seen = self._tokens.get(token)
            if seen and now - seen[1] < TOKEN_MEMORY:
                raise request_error(
                    f'The HIT with unique request token "{token}" already exists. HITId: {seen[0]}',
                    "AWS.MechanicalTurk.HitAlreadyExists",
                )
        try:
            question = parse_external_question(str(params["Question"]))
        except QuestionError as error:
            raise request_error(
                f"Question is invalid: {error}", "AWS.MechanicalTurk.XMLParseError"
            ) from error
        if urlsplit(question.url).scheme != "https" and not self.allow_http_loopback:
            raise request_error("ExternalURL must use HTTPS.")
        max_assignments = integer(params, "MaxAssignments", 1, 1_000_000_000, default=1)
        cost = (hit_type.reward * (1 + self._fee)).quantize(Decimal("0.01"))
        total = cost * max_assignments
        if total > self._balance:
            raise _insufficient_funds()
        hit = _Hit(
            hit_id=self._new_id("3"),
            hit_type=hit_type,
            question=str(params["Question"]),
            external_url=question.url,
            max_assignments=max_assignments,
            created=now,
            expires=now + timedelta(seconds=integer(params, "LifetimeInSeconds", 30, 31_536_000)),
            annotation=text(params, "RequesterAnnotation", 255, required=False) or None,
            token=token,
            cost_per_assignment=cost,
        )
        self._balance -= total
        self._on_hold += total
        self._hits[hit.hit_id] = hit
        if token is not None:
            self._tokens[token] = (hit.hit_id, now)
        return {"HIT": self._hit_view(hit)}

    def _op_GetHIT(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"HIT": self._hit_view(self._hit(params))}

    def _op_ListHITs(self, params: dict[str, Any]) -> dict[str, Any]:
        hits = sorted(self._hits.values(), key=lambda h: (h.created, h.hit_id))
        page, token = paginate(hits, params)
        return {"HITs": [self._hit_view(h) for h in page], "NumResults": len(page), **token}

    def _op_UpdateExpirationForHIT(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "HITId", "ExpireAt")
        hit = self._hit(params)
        try:
            expire_at = datetime.fromtimestamp(float(params["ExpireAt"]), UTC)
        except (TypeError, ValueError) as error:
            raise request_error("ExpireAt must be a timestamp.") from error
        now = self.now()
        hit.expires = max(expire_at, now)
        if expire_at <= now and not hit.released:
            used = sum(
                1 for a in self._assignments_of(hit) if a.status not in ("Returned", "Abandoned")
            )
            self._release(hit, hit.max_assignments - used)
            hit.released = True
        return {}

    def _release(self, hit: _Hit, count: int) -> None:
        amount = hit.cost_per_assignment * max(count, 0)
        self._on_hold -= amount
        self._balance += amount

    # assignments

    def _op_ListAssignmentsForHIT(self, params: dict[str, Any]) -> dict[str, Any]:
        hit = self._hit(params)
        wanted = params.get("AssignmentStatuses") or list(_LISTED_STATUSES)
        bad = [s for s in wanted if s not in _LISTED_STATUSES]
        if bad:
            raise request_error(
                f"AssignmentStatuses {bad} are not valid; use {list(_LISTED_STATUSES)}."
            )
        listed = [a for a in self._assignments_of(hit) if a.status in wanted]
        page, token = paginate(listed, params)
        return {
            "Assignments": [self._assignment_view(a) for a in page],
            "NumResults": len(page),
            **token,
        }

    def _op_GetAssignment(self, params: dict[str, Any]) -> dict[str, Any]:
        assignment = self._assignment(params)
        if assignment.status not in _LISTED_STATUSES:
            raise request_error(
                f"Assignment {assignment.assignment_id} does not exist.",
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
            )
        return {
            "Assignment": self._assignment_view(assignment),
            "HIT": self._hit_view(assignment.hit),
        }

    def _op_ApproveAssignment(self, params: dict[str, Any]) -> dict[str, Any]:
        assignment = self._assignment(params)
        override = bool(params.get("OverrideRejection"))
        allowed = ("Submitted", "Rejected") if override else ("Submitted",)
        if assignment.status not in allowed:
            raise _wrong_state(assignment, allowed)
        if assignment.status == "Rejected":
            if assignment.hit.cost_per_assignment > self._balance:
                raise _insufficient_funds()
            self._balance -= assignment.hit.cost_per_assignment
            self._on_hold += assignment.hit.cost_per_assignment
        assignment.feedback = text(params, "RequesterFeedback", 1024, required=False) or None
        self._pay(assignment, self.now())
        return {}

    def _op_RejectAssignment(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "RequesterFeedback")
        assignment = self._assignment(params)
        if assignment.status != "Submitted":
            raise _wrong_state(assignment, ("Submitted",))
        assignment.status = "Rejected"
        assignment.rejected = self.now()
        assignment.feedback = text(params, "RequesterFeedback", 1024)
        self._release(assignment.hit, 1)
        return {}

    # money

    def _op_GetAccountBalance(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"AvailableBalance": f"{self._balance:.2f}", "OnHoldBalance": f"{self._on_hold:.2f}"}

    def _op_SendBonus(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "WorkerId", "BonusAmount", "AssignmentId", "Reason")
        assignment = self._assignment(params)
        if assignment.worker_id != params["WorkerId"]:
            raise request_error(
                f"Assignment {assignment.assignment_id} was not done by worker "
                f"{params['WorkerId']}."
            )
        if assignment.status not in _LISTED_STATUSES:
            raise _wrong_state(assignment, _LISTED_STATUSES)
        amount = money(params["BonusAmount"])
        reason = text(params, "Reason", 4096)
        now = self.now()
        token = params.get("UniqueRequestToken")
        if token is not None:
            if not isinstance(token, str) or not 1 <= len(token) <= 64:
                raise request_error("UniqueRequestToken must be 1 to 64 characters.")
            seen = self._bonus_tokens.get(token)
            if seen is not None and now - seen < TOKEN_MEMORY:
                raise request_error(
                    f'The bonus with unique request token "{token}" was already sent. '
                    f"RequestId: {digest_id(token)}"
                )
        cost = amount + (amount * self._fee).quantize(Decimal("0.01"))
        if cost > self._balance:
            raise _insufficient_funds()
        self._balance -= cost
        self._bonuses.append(_Bonus(assignment.worker_id, assignment.assignment_id, amount,
                                    reason, now))  # fmt: skip
        if token is not None:
            self._bonus_tokens[token] = now
        return {}

    def _op_ListBonusPayments(self, params: dict[str, Any]) -> dict[str, Any]:
        if bool(params.get("HITId")) == bool(params.get("AssignmentId")):
            raise request_error("Give exactly one of HITId or AssignmentId.")
        if params.get("AssignmentId"):
            chosen = [b for b in self._bonuses if b.assignment_id == params["AssignmentId"]]
        else:
            hit = self._hit(params)
            mine = {a.assignment_id for a in self._assignments_of(hit)}
            chosen = [b for b in self._bonuses if b.assignment_id in mine]
        page, token = paginate(chosen, params)
        views = [
            {
                "WorkerId": b.worker_id,
                "BonusAmount": f"{b.amount:.2f}",
                "AssignmentId": b.assignment_id,
                "Reason": b.reason,
                "GrantTime": _epoch(b.granted),
            }
            for b in page
        ]
        return {"BonusPayments": views, "NumResults": len(views), **token}

    def _op_NotifyWorkers(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "Subject", "MessageText", "WorkerIds")
        subject = text(params, "Subject", NOTIFY_SUBJECT_MAX)
        message = text(params, "MessageText", NOTIFY_TEXT_MAX)
        workers = params["WorkerIds"]
        if not isinstance(workers, list) or not 1 <= len(workers) <= NOTIFY_WORKERS_MAX:
            raise request_error(
                f"WorkerIds must list 1 to {NOTIFY_WORKERS_MAX} workers, got "
                f"{len(workers) if isinstance(workers, list) else workers!r}."
            )
        reviewed = {
            a.worker_id for a in self._assignments.values() if a.status in ("Approved", "Rejected")
        }
        failures = []
        for worker_id in workers:
            if worker_id not in reviewed:
                failures.append(
                    {
                        "NotifyWorkersFailureCode": "HardFailure",
                        "NotifyWorkersFailureMessage": (
                            "You can only send messages to Workers whose work you have "
                            "approved or rejected."
                        ),
                        "WorkerId": worker_id,
                    }
                )
            else:
                self.notifications.append(
                    {"worker": worker_id, "subject": subject, "text": message}
                )
        return {"NotifyWorkersFailureStatuses": failures}

    # qualifications

    def _op_CreateQualificationType(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "Name", "Description", "QualificationTypeStatus")
        name = text(params, "Name", 1000)
        if any(q["Name"] == name for q in self._qualification_types.values()):
            raise request_error(
                "You have already created a QualificationType with this name. A "
                "QualificationType's name must be unique among all of the QualificationTypes "
                "created by the same user.",
                "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
            )
        if params["QualificationTypeStatus"] not in ("Active", "Inactive"):
            raise request_error("QualificationTypeStatus must be Active or Inactive.")
        type_id = self._new_id("3")
        self._qualification_types[type_id] = {
            "QualificationTypeId": type_id,
            "CreationTime": _epoch(self.now()),
            "Name": name,
            "Description": text(params, "Description", 2000),
            "Keywords": params.get("Keywords", ""),
            "QualificationTypeStatus": params["QualificationTypeStatus"],
            "IsRequestable": False,
            "AutoGranted": bool(params.get("AutoGranted", False)),
        }
        return {"QualificationType": dict(self._qualification_types[type_id])}

    def _op_ListQualificationTypes(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "MustBeRequestable")
        query = str(params.get("Query") or "").lower()
        found = [
            dict(q)
            for q in self._qualification_types.values()
            if query in q["Name"].lower() or query in q["Description"].lower()
        ]
        page, token = paginate(found, params)
        return {"QualificationTypes": page, "NumResults": len(page), **token}

    def _op_AssociateQualificationWithWorker(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "QualificationTypeId", "WorkerId")
        type_id = params["QualificationTypeId"]
        if type_id not in self._qualification_types:
            raise request_error(
                f"QualificationType {type_id} does not exist.",
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
            )
        worker_id = params["WorkerId"]
        if worker_id not in self.workers:
            raise request_error(
                f"Worker {worker_id} does not exist.", "AWS.MechanicalTurk.WorkerDoesNotExist"
            )
        self.workers[worker_id].qualifications[type_id] = integer(
            params, "IntegerValue", -(2**31), 2**31 - 1, default=1
        )
        return {}

    def _op_ListWorkersWithQualificationType(self, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "QualificationTypeId")
        type_id = params["QualificationTypeId"]
        if type_id not in self._qualification_types:
            raise request_error(
                f"QualificationType {type_id} does not exist.",
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
            )
        holders = [
            {
                "QualificationTypeId": type_id,
                "WorkerId": worker_id,
                "IntegerValue": profile.qualifications[type_id],
                "Status": "Granted",
            }
            for worker_id, profile in sorted(self.workers.items())
            if type_id in profile.qualifications
        ]
        page, token = paginate(holders, params)
        return {"Qualifications": page, "NumResults": len(page), **token}

    # -- the worker side -----------------------------------------------------------------

    def register_worker(
        self, worker_id: str, profile: WorkerProfile | None = None
    ) -> WorkerProfile:
        with self._lock:
            return self.workers.setdefault(worker_id, profile or WorkerProfile())

    def preview_url(self, hit_id: str) -> str:
        with self._lock:
            hit = self._hit({"HITId": hit_id})
            return with_query(
                hit.external_url, {"assignmentId": PREVIEW_ASSIGNMENT_ID, "hitId": hit.hit_id}
            )

    def accept(self, hit_id: str, worker_id: str) -> tuple[str, str]:
        """A worker accepts a HIT: (assignment id, the URL MTurk's iframe would load)."""
        with self._lock:
            self._settle()
            hit = self._hit({"HITId": hit_id})
            profile = self.workers.setdefault(worker_id, WorkerProfile())
            now = self.now()
            if now >= hit.expires:
                raise Fault(
                    "WorkerError", f"HIT {hit_id} is no longer available (expired)", status=410
                )
            mine = [a for a in self._assignments_of(hit) if a.worker_id == worker_id]
            if mine:
                raise Fault(
                    "WorkerError", f"worker {worker_id} already worked on HIT {hit_id}", status=409
                )
            taken = sum(
                1 for a in self._assignments_of(hit) if a.status not in ("Returned", "Abandoned")
            )
            if taken >= hit.max_assignments:
                raise Fault("WorkerError", f"HIT {hit_id} has no assignment left", status=409)
            for requirement in hit.hit_type.requirements:
                if not meets(profile, requirement):
                    raise Fault(
                        "WorkerError",
                        f"worker {worker_id} does not meet qualification "
                        f"{requirement['QualificationTypeId']} ({requirement['Comparator']})",
                        status=403,
                    )
            assignment = _Assignment(
                assignment_id=self._new_id("3"),
                hit=hit,
                worker_id=worker_id,
                status="Accepted",
                accepted=now,
                deadline=now + timedelta(seconds=hit.hit_type.duration_s),
            )
            self._assignments[assignment.assignment_id] = assignment
            url = with_query(
                hit.external_url,
                {
                    "assignmentId": assignment.assignment_id,
                    "hitId": hit.hit_id,
                    "workerId": worker_id,
                    "turkSubmitTo": self.submit_base_url,
                },
            )
            return assignment.assignment_id, url

    def return_assignment(self, assignment_id: str) -> None:
        with self._lock:
            assignment = self._assignment({"AssignmentId": assignment_id})
            if assignment.status != "Accepted":
                raise Fault(
                    "WorkerError",
                    f"assignment {assignment_id} is {assignment.status}, not Accepted",
                    status=409,
                )
            assignment.status = "Returned"

    def external_submit(self, fields: dict[str, list[str]]) -> str:
        """The form post to /mturk/externalSubmit; returns the assignment id it completed."""
        with self._lock:
            self._settle()
            assignment_id = (fields.get("assignmentId") or [""])[0]
            if not assignment_id:
                raise Fault("WorkerError", "externalSubmit needs an assignmentId field", status=400)
            if not any(name != "assignmentId" for name in fields):
                raise Fault(
                    "WorkerError",
                    "externalSubmit needs at least one field besides assignmentId",
                    status=400,
                )
            assignment = self._assignments.get(assignment_id)
            if assignment is None:
                raise Fault("WorkerError", f"unknown assignment {assignment_id}", status=404)
            if assignment.status != "Accepted":
                raise Fault(
                    "WorkerError",
                    f"assignment {assignment_id} is {assignment.status}, not Accepted",
                    status=409,
                )
            assignment.status = "Submitted"
            assignment.submitted = self.now()
            assignment.answer = answer_xml(fields)
            return assignment_id

    # -- helpers -------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return prefix + "".join(self._rng.choice(ID_ALPHABET) for _ in range(29))

    def _hit(self, params: dict[str, Any]) -> _Hit:
        require(params, "HITId")
        hit = self._hits.get(params["HITId"])
        if hit is None:
            raise request_error(
                f"Hit {params['HITId']} does not exist.", "AWS.MechanicalTurk.HITDoesNotExist"
            )
        return hit

    def _assignment(self, params: dict[str, Any]) -> _Assignment:
        require(params, "AssignmentId")
        assignment = self._assignments.get(params["AssignmentId"])
        if assignment is None:
            raise request_error(
                f"Assignment {params['AssignmentId']} does not exist.",
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
            )
        return assignment

    def _assignments_of(self, hit: _Hit) -> list[_Assignment]:
        return [a for a in self._assignments.values() if a.hit is hit]

    def _hit_view(self, hit: _Hit) -> dict[str, Any]:
        work = self._assignments_of(hit)
        pending = sum(1 for a in work if a.status == "Accepted")
        submitted = sum(1 for a in work if a.status == "Submitted")
        completed = sum(1 for a in work if a.status in ("Approved", "Rejected"))
        expired = self.now() >= hit.expires
        available = 0 if expired else hit.max_assignments - pending - submitted - completed
        if available > 0:
            status = "Assignable"
        elif pending:
            status = "Unassignable"
        else:
            status = "Reviewable"
        hit_type = hit.hit_type
        return {
            "HITId": hit.hit_id,
            "HITTypeId": hit_type.hit_type_id,
            "HITGroupId": "3G" + hit_type.hit_type_id[2:],
            "CreationTime": _epoch(hit.created),
            "Title": hit_type.title,
            "Description": hit_type.description,
            "Question": hit.question,
            "Keywords": hit_type.keywords,
            "HITStatus": status,
            "MaxAssignments": hit.max_assignments,
            "Reward": f"{hit_type.reward:.2f}",
            "AutoApprovalDelayInSeconds": hit_type.auto_approval_delay_s,
            "Expiration": _epoch(hit.expires),
            "AssignmentDurationInSeconds": hit_type.duration_s,
            "QualificationRequirements": hit_type.requirements,
            "HITReviewStatus": "NotReviewed",
            "NumberOfAssignmentsPending": pending,
            "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsCompleted": completed,
            **({"RequesterAnnotation": hit.annotation} if hit.annotation else {}),
        }

    def _assignment_view(self, assignment: _Assignment) -> dict[str, Any]:
        auto = (
            assignment.submitted + timedelta(seconds=assignment.hit.hit_type.auto_approval_delay_s)
            if assignment.submitted
            else None
        )
        view = {
            "AssignmentId": assignment.assignment_id,
            "WorkerId": assignment.worker_id,
            "HITId": assignment.hit.hit_id,
            "AssignmentStatus": assignment.status,
            "AutoApprovalTime": _epoch(auto),
            "AcceptTime": _epoch(assignment.accepted),
            "SubmitTime": _epoch(assignment.submitted),
            "ApprovalTime": _epoch(assignment.approved),
            "RejectionTime": _epoch(assignment.rejected),
            "Deadline": _epoch(assignment.deadline),
            "Answer": assignment.answer,
            "RequesterFeedback": assignment.feedback,
        }
        return {key: value for key, value in view.items() if value is not None}
