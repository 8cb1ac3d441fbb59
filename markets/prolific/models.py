"""Prolific's JSON, as typed models: what the `prolific` command sends and reads back.

Field names are Prolific's (snake_case already). Requests forbid unknown fields, so a typo
here fails in our tests, not at Prolific; responses ignore fields they do not name, so a
field Prolific adds does not break a sync. Money on the wire is in the minor unit of the
workspace's currency (pence or cents): rewards as integers, bonus figures and balances as
numbers; `minor_units` turns them into `Decimal` without going through binary floats.

Sources: Prolific's API reference (docs.prolific.com/api-reference: studies, submissions,
bonuses, participant groups, workspaces) and its official CLI (github.com/prolific-oss/cli:
client/, model/, docs/examples/). docs/markets.md lists what could not be verified.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

# Study transitions (`POST /api/v1/studies/{id}/transition/`).
StudyAction = Literal["PUBLISH", "PAUSE", "START", "STOP"]
# Prolific's rejection categories (`rejection_category` of a REJECT transition).
REJECTION_CATEGORIES = (
    "TOO_QUICKLY",
    "TOO_SLOWLY",
    "FAILED_INSTRUCTIONS",
    "INCOMP_LONGITUDINAL",
    "FAILED_CHECK",
    "LOW_EFFORT",
    "MALINGERING",
    "NO_CODE",
    "BAD_CODE",
    "NO_DATA",
    "UNSUPP_DEVICE",
    "OTHER",
)
# A rejection message must be at least this long (Prolific's CLI enforces the same).
MIN_REJECTION_MESSAGE = 100
# Submission statuses in which the participant finished the study on Prolific.
COMPLETED_STATUSES = frozenset({"AWAITING REVIEW", "APPROVED"})
# Still under way on Prolific: a later sync decides.
OPEN_STATUSES = frozenset({"RESERVED", "ACTIVE"})


def minor_units(value: Decimal | float | str) -> Decimal:
    """An amount in minor units (100.0 = 1.00) as an exact `Decimal` in major units."""
    return (Decimal(str(value)) / 100).quantize(Decimal("0.01"))


def to_minor(amount: Decimal) -> int:
    """Major units (1.25) to Prolific's integer minor units (125); refuses fractions of a cent."""
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has fractions of a cent")
    return int(minor)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# -- studies -----------------------------------------------------------------------------


class CompletionAction(_Request):
    action: Literal["MANUALLY_REVIEW", "AUTOMATICALLY_APPROVE", "ADD_TO_PARTICIPANT_GROUP"]
    participant_group: str | None = None


class CompletionCode(_Request):
    code: str
    code_type: str = "COMPLETED"
    actions: list[CompletionAction]


class Filter(_Request):
    filter_id: str
    selected_values: list[str]


class SubmissionsConfig(_Request):
    max_submissions_per_participant: int = 1


class StudyCreate(_Request):
    """The body of `POST /api/v1/studies/`."""

    name: str
    internal_name: str
    description: str
    external_study_url: str
    prolific_id_option: Literal["url_parameters"] = "url_parameters"
    completion_codes: list[CompletionCode]
    total_available_places: int = Field(ge=1)
    estimated_completion_time: int = Field(ge=1)  # minutes
    maximum_allowed_time: int = Field(ge=1)  # minutes
    reward: int = Field(ge=1)  # minor units
    device_compatibility: list[str]
    peripheral_requirements: list[str] = Field(default_factory=list)
    filters: list[Filter] = Field(default_factory=list)
    submissions_config: SubmissionsConfig = Field(default_factory=SubmissionsConfig)
    project: str | None = None


class StudyTransition(_Request):
    action: StudyAction


class CostQuoteRequest(_Request):
    """The body of `POST /api/v1/study-cost-calculator/`."""

    reward: int  # minor units
    total_available_places: int


class StudyCodeOut(_Response):
    code: str
    code_type: str = "COMPLETED"


class Study(_Response):
    id: str
    name: str = ""
    internal_name: str | None = None
    status: str
    external_study_url: str | None = None
    total_available_places: int = 0
    places_taken: int = 0
    reward: Decimal = Decimal(0)  # minor units
    completion_codes: list[StudyCodeOut] = Field(default_factory=list)

    def completion_code(self) -> str | None:
        """The code of type COMPLETED (the one our page hands out)."""
        return next((c.code for c in self.completion_codes if c.code_type == "COMPLETED"), None)


class CostQuote(_Response):
    total_cost: Decimal  # minor units, fees and VAT included


# -- submissions -------------------------------------------------------------------------


class Submission(_Response):
    """A submission as listed for a study; its id is the SESSION_ID of the study URL."""

    id: str
    participant_id: str = Field(validation_alias=AliasChoices("participant_id", "participant"))
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    study_code: str | None = Field(
        default=None, validation_alias=AliasChoices("study_code", "entered_code")
    )

    @field_validator("id", "participant_id")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class SubmissionTransition(_Request):
    action: Literal["APPROVE", "REJECT"]
    message: str | None = None
    rejection_category: str | None = None


class BulkApprove(_Request):
    study_id: str
    submission_ids: list[str]


# -- money -------------------------------------------------------------------------------


class BonusCreate(_Request):
    """`POST /api/v1/submissions/bonus-payments/`: one `participant_id,amount` line each,
    amounts in major units of the workspace's currency."""

    study_id: str
    csv_bonuses: str


class BulkBonus(_Response):
    id: str
    study: str | None = None
    amount: Decimal  # minor units
    fees: Decimal = Decimal(0)
    vat: Decimal = Decimal(0)
    total_amount: Decimal


class WorkspaceBalance(_Response):
    currency_code: str
    total_balance: Decimal  # minor units
    available_balance: Decimal


# -- participant groups ------------------------------------------------------------------


class ParticipantGroupCreate(_Request):
    name: str
    workspace_id: str
    description: str | None = None
    participant_ids: list[str] = Field(default_factory=list)


class ParticipantGroup(_Response):
    id: str
    name: str
    workspace_id: str | None = None
    participant_count: int | None = None


class GroupMember(_Response):
    participant_id: str


class ParticipantIds(_Request):
    participant_ids: list[str]


# -- lists -------------------------------------------------------------------------------


def next_page(data: dict[str, Any]) -> str | None:
    """The URL of the next page of a list answer (`_links.next.href`), if any."""
    links = data.get("_links") or {}
    href = (links.get("next") or {}).get("href")
    return href or None
