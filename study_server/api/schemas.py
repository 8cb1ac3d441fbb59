"""What the JSON API accepts and answers (pydantic), kept apart from the SQL models.

Requests forbid unknown fields and take integers only as JSON integers, so a malformed or
padded body is a 422 that says which field is wrong, before any database work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

# MTurk's ids (assignmentId, hitId, workerId) and lab participant codes: letters, digits, _ and -.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# The most items an assignment may have on the wire (far above any sane study).
MAX_ITEMS = 1000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MTurkIds(_Request):
    assignment_id: Identifier
    hit_id: Identifier
    turk_submit_to: Annotated[str, StringConstraints(max_length=256)]


class AcceptRequest(_Request):
    worker_id: Identifier
    # Absent in the local (lab) mode.
    mturk: MTurkIds | None = None


class AcceptResponse(BaseModel):
    outcome: Literal["allocated", "resumed", "submitted"]
    assignment: str
    num_items: int
    class_names: list[str]
    item_urls: list[str]
    submit_url: str
    expires_at: datetime


class LabelIn(_Request):
    position: Annotated[StrictInt, Field(ge=0, lt=MAX_ITEMS)]
    label: StrictInt
    response_ms: Annotated[StrictInt, Field(ge=0, le=24 * 3600 * 1000)] | None = None


class SubmitRequest(_Request):
    worker_id: Identifier
    mturk_assignment_id: Identifier | None = None
    labels: Annotated[list[LabelIn], Field(min_length=1, max_length=MAX_ITEMS)]


class SubmitResponse(BaseModel):
    status: Literal["stored", "already_submitted"]
    labels: int


# Prolific's ids (PROLIFIC_PID, STUDY_ID, SESSION_ID): 24 hexadecimal characters.
ProlificId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{24}$")]


class ProlificIdsIn(_Request):
    participant_id: ProlificId
    study_id: ProlificId
    session_id: ProlificId


class ProlificSubmitRequest(ProlificIdsIn):
    labels: Annotated[list[LabelIn], Field(min_length=1, max_length=MAX_ITEMS)]


class CompletionResponse(BaseModel):
    completion_url: str
