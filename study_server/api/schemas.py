"""What the JSON API accepts and answers (pydantic), kept apart from the SQL models.

Requests forbid unknown fields and take integers only as JSON integers, so a malformed or
padded body is a 422 that says which field is wrong, before any database work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from study_server.invitations import CODE_PATTERN

# MTurk's ids (assignmentId, hitId, workerId): letters, digits, _ and -.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# A lab invitation code (study_server/invitations.py).
LabCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
_WHO = "give either `code` (a lab invitation) or `worker_id` with MTurk's ids"
# The most items an assignment may have on the wire (far above any sane study).
MAX_ITEMS = 1000
# The SHA-256 of a consent text, as the page got it (study_server/protocol_texts.py).
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MTurkIds(_Request):
    assignment_id: Identifier
    hit_id: Identifier
    turk_submit_to: Annotated[str, StringConstraints(max_length=256)]


class AcceptRequest(_Request):
    """An MTurk worker (`worker_id` and `mturk`) or a lab participant (`code`), who agreed to
    the consent text whose SHA-256 is `consent_sha256` (required: no consent, no images)."""

    worker_id: Identifier | None = None
    mturk: MTurkIds | None = None
    code: LabCode | None = None
    consent_sha256: Sha256

    @model_validator(mode="after")
    def _one_kind(self) -> AcceptRequest:
        if (self.code is None) == (self.worker_id is None or self.mturk is None):
            raise ValueError(_WHO)
        if self.code is not None and (self.worker_id or self.mturk):
            raise ValueError(_WHO)
        return self


class ProtocolTextOut(BaseModel):
    """A version of a consent or debrief text: the sanitized HTML shown, and its SHA-256."""

    version: int
    sha256: str
    html: str


class DeclineRequest(_Request):
    """Someone who read the consent text and chose not to take part. Nothing says who."""

    consent_sha256: Sha256
    source: Literal["mturk", "local", "prolific"]


class DeclineResponse(BaseModel):
    status: Literal["declined"]


class SavedLabel(BaseModel):
    position: int
    label: int
    response_ms: int | None


class AcceptResponse(BaseModel):
    outcome: Literal["allocated", "shared", "resumed", "submitted"]
    assignment: str
    num_items: int
    class_names: list[str]
    item_urls: list[str]
    # PUT one label to `label_url_prefix` + position as it is given (a reload resumes).
    label_url_prefix: str
    submit_url: str
    expires_at: datetime
    # The labels saved so far, in position order (empty unless resumed).
    labels: list[SavedLabel] = Field(default_factory=list)
    # With outcome "submitted": the debrief given with the labels, shown again.
    debrief: ProtocolTextOut | None = None


ResponseMs = Annotated[StrictInt, Field(ge=0, le=24 * 3600 * 1000)]
# A class index: whether it is one of the study's classes is checked against the study (a
# 422 that names them); this only keeps it within the database's integers.
ClassIndex = Annotated[StrictInt, Field(ge=-(2**31), lt=2**31)]


class LabelIn(_Request):
    position: Annotated[StrictInt, Field(ge=0, lt=MAX_ITEMS)]
    label: ClassIndex
    response_ms: ResponseMs | None = None


class _Who(_Request):
    """The person acting on an assignment: MTurk ids, or the lab invitation code."""

    worker_id: Identifier | None = None
    mturk_assignment_id: Identifier | None = None
    code: LabCode | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _Who:
        mturk = self.worker_id is not None and self.mturk_assignment_id is not None
        if mturk == (self.code is not None) or (
            self.code is not None and (self.worker_id or self.mturk_assignment_id)
        ):
            raise ValueError(_WHO)
        return self


class SubmitRequest(_Who):
    labels: Annotated[list[LabelIn], Field(min_length=1, max_length=MAX_ITEMS)]


class SaveLabelRequest(_Who):
    label: ClassIndex
    response_ms: ResponseMs | None = None


class SaveLabelResponse(BaseModel):
    status: Literal["saved"]


class SubmitResponse(BaseModel):
    status: Literal["stored", "already_submitted"]
    labels: int
    # The debrief the page shows now, before the hand-off to the market.
    debrief: ProtocolTextOut | None = None


# Prolific's ids (PROLIFIC_PID, STUDY_ID, SESSION_ID): 24 hexadecimal characters.
ProlificId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{24}$")]


class ProlificIdsIn(_Request):
    participant_id: ProlificId
    study_id: ProlificId
    session_id: ProlificId


class ProlificAcceptRequest(ProlificIdsIn):
    consent_sha256: Sha256


class ProlificSaveLabelRequest(ProlificIdsIn):
    label: ClassIndex
    response_ms: ResponseMs | None = None


class ProlificSubmitRequest(ProlificIdsIn):
    labels: Annotated[list[LabelIn], Field(min_length=1, max_length=MAX_ITEMS)]


class CompletionResponse(BaseModel):
    completion_url: str
