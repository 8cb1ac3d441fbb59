"""Plain Python views of MTurk's PascalCase structures, made once at the client boundary.

Everything past `mturk.client` reads `hit.hit_id` and `assignment.worker_id`, never
``response["HITs"][0]["HITId"]``; a renamed or missing AWS field then breaks in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# MTurk's built-in qualification types (the same ids on the sandbox and the live site).
PERCENT_APPROVED_QUALIFICATION = "000000000000000000L0"
NUMBER_APPROVED_QUALIFICATION = "00000000000000000040"
LOCALE_QUALIFICATION = "00000000000000000071"

# Statuses ListAssignmentsForHIT can report: only work a worker submitted is ever listed.
ASSIGNMENT_STATUSES = ("Submitted", "Approved", "Rejected")


def _utc(value: Any) -> datetime | None:
    """boto3 parses timestamps in the local zone; the database wants aware UTC."""
    return value.astimezone(UTC) if isinstance(value, datetime) else None


@dataclass(frozen=True)
class QualificationRequirement:
    """One condition a worker must meet to see/accept a HIT."""

    qualification_type_id: str
    comparator: str
    integer_values: tuple[int, ...] = ()
    locales: tuple[str, ...] = ()
    actions_guarded: str = "DiscoverPreviewAndAccept"

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "QualificationTypeId": self.qualification_type_id,
            "Comparator": self.comparator,
            "ActionsGuarded": self.actions_guarded,
        }
        if self.integer_values:
            data["IntegerValues"] = list(self.integer_values)
        if self.locales:
            data["LocaleValues"] = [{"Country": country} for country in self.locales]
        return data


@dataclass(frozen=True)
class HitTypeSpec:
    """The properties shared by all HITs of a study (MTurk groups HITs by them)."""

    title: str
    description: str
    keywords: str
    reward: Decimal
    assignment_duration_s: int
    auto_approval_delay_s: int
    requirements: tuple[QualificationRequirement, ...] = field(default_factory=tuple)

    def to_api(self) -> dict[str, Any]:
        return {
            "Title": self.title,
            "Description": self.description,
            "Keywords": self.keywords,
            "Reward": f"{self.reward:.2f}",
            "AssignmentDurationInSeconds": self.assignment_duration_s,
            "AutoApprovalDelayInSeconds": self.auto_approval_delay_s,
            "QualificationRequirements": [r.to_api() for r in self.requirements],
        }


@dataclass(frozen=True)
class Hit:
    hit_id: str
    hit_type_id: str
    hit_group_id: str | None
    status: str
    max_assignments: int
    available: int
    pending: int
    completed: int
    reward: Decimal | None
    created_at: datetime | None
    expires_at: datetime | None
    annotation: str | None
    assignment_duration_s: int | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Hit:
        reward = data.get("Reward")
        duration = data.get("AssignmentDurationInSeconds")
        return cls(
            hit_id=data["HITId"],
            hit_type_id=data.get("HITTypeId", ""),
            hit_group_id=data.get("HITGroupId"),
            status=data.get("HITStatus", ""),
            max_assignments=int(data.get("MaxAssignments", 0)),
            available=int(data.get("NumberOfAssignmentsAvailable", 0)),
            pending=int(data.get("NumberOfAssignmentsPending", 0)),
            completed=int(data.get("NumberOfAssignmentsCompleted", 0)),
            reward=Decimal(reward) if reward is not None else None,
            created_at=_utc(data.get("CreationTime")),
            expires_at=_utc(data.get("Expiration")),
            annotation=data.get("RequesterAnnotation"),
            assignment_duration_s=int(duration) if duration is not None else None,
        )


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    worker_id: str
    hit_id: str
    status: str
    accepted_at: datetime | None
    submitted_at: datetime | None
    answer: str | None
    feedback: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Assignment:
        return cls(
            assignment_id=data["AssignmentId"],
            worker_id=data["WorkerId"],
            hit_id=data["HITId"],
            status=data["AssignmentStatus"],
            accepted_at=_utc(data.get("AcceptTime")),
            submitted_at=_utc(data.get("SubmitTime")),
            answer=data.get("Answer"),
            feedback=data.get("RequesterFeedback"),
        )


@dataclass(frozen=True)
class Balance:
    available: Decimal
    on_hold: Decimal | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Balance:
        on_hold = data.get("OnHoldBalance")
        return cls(
            available=Decimal(data["AvailableBalance"]),
            on_hold=Decimal(on_hold) if on_hold is not None else None,
        )


@dataclass(frozen=True)
class BonusPayment:
    worker_id: str
    assignment_id: str
    amount: Decimal
    reason: str
    granted_at: datetime | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BonusPayment:
        return cls(
            worker_id=data["WorkerId"],
            assignment_id=data["AssignmentId"],
            amount=Decimal(str(data["BonusAmount"])),
            reason=data.get("Reason", ""),
            granted_at=_utc(data.get("GrantTime")),
        )


@dataclass(frozen=True)
class NotifyFailure:
    worker_id: str
    code: str  # SoftFailure | HardFailure
    message: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> NotifyFailure:
        return cls(
            worker_id=data.get("WorkerId", ""),
            code=data.get("NotifyWorkersFailureCode", ""),
            message=data.get("NotifyWorkersFailureMessage", ""),
        )
