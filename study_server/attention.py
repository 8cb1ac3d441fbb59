"""The attention policy: what a submission must reach to count, judged when it is stored.

Catch trials are clean images whose true class is known (the bundle's `catch` stimuli, dealt
into assignments at import). A study's policy (`attention_policies`, versioned like its texts,
set at import and changed with `study-server protocol attention`) asks for

- a minimum share of the assignment's catch trials labeled with their true class, and
  optionally
- a minimum median response time over the submission's labels (as the page measured them).

The submission is judged inside its own transaction (`operations.submit`): the outcome
(`passed`, `failed_attention`, or `not_applicable` when the policy has nothing to judge: no
catch trials in the assignment and no time minimum), the numbers and the policy version are
stored on the allocation. A criterion without data is not judged: an assignment without
catch trials is not failed for it, nor a submission sent without response times for time
(the page always sends them; the note says so). A changed policy re-judges every stored
submission of the study (`reevaluate`), recorded in the audit of events.

What the outcome does: `analyze-study` leaves failed submissions out of Table 2 by default,
listing each with its numbers (`--include-failed-attention` shows the effect), and the
review commands propose what to do about pay, following each market's rules
(docs/protocol.md): a failed check alone never rejects work by default.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from study_server.db.models import (
    Allocation,
    AllocationStatus,
    AssignmentItem,
    AttentionOutcome,
    AttentionPolicy,
    Label,
    Stimulus,
    StimulusKind,
)
from study_server.db.rendered import Call
from study_server.db.store import record_event


@dataclass(frozen=True)
class PolicySpec:
    """The criteria of a policy (None: no minimum of that kind)."""

    min_catch_accuracy: float | None = 0.5
    min_median_response_ms: int | None = None

    def __post_init__(self) -> None:
        if self.min_catch_accuracy is not None and not 0 <= self.min_catch_accuracy <= 1:
            raise ValueError(
                f"the minimum catch accuracy is a share from 0 to 1, got {self.min_catch_accuracy}"
            )
        if self.min_median_response_ms is not None and self.min_median_response_ms < 0:
            raise ValueError(
                f"the minimum median response time is 0 ms or more, got {self.min_median_response_ms}"
            )

    @classmethod
    def of(cls, row: AttentionPolicy) -> PolicySpec:
        return cls(row.min_catch_accuracy, row.min_median_response_ms)

    def describe(self) -> str:
        parts = []
        if self.min_catch_accuracy is not None:
            parts.append(f"catch accuracy >= {self.min_catch_accuracy:.0%}")
        if self.min_median_response_ms is not None:
            parts.append(f"median response time >= {self.min_median_response_ms} ms")
        return ", ".join(parts) or "no minimum (every submission is not_applicable)"


@dataclass(frozen=True)
class Assessment:
    outcome: AttentionOutcome
    catch_correct: int
    catch_total: int
    median_response_ms: float | None
    timed: int  # labels that came with a response time
    reasons: tuple[str, ...]  # why it failed (empty unless failed)

    def detail(self, policy: AttentionPolicy) -> dict[str, Any]:
        """The numbers kept on the allocation (`attention_detail`) and exported."""
        return {
            "policy_version": policy.version,
            "min_catch_accuracy": policy.min_catch_accuracy,
            "min_median_response_ms": policy.min_median_response_ms,
            "catch_correct": self.catch_correct,
            "catch_total": self.catch_total,
            "median_response_ms": self.median_response_ms,
            "timed_labels": self.timed,
            "reasons": list(self.reasons),
        }


def judge(
    spec: PolicySpec, *, catch_right: Sequence[bool], response_ms: Sequence[int | None]
) -> Assessment:
    """The verdict on one submission: its catch trials (right or not) and response times."""
    times = [ms for ms in response_ms if ms is not None]
    median = float(statistics.median(times)) if times else None
    correct, total = sum(catch_right), len(catch_right)
    judged, reasons = False, []
    if spec.min_catch_accuracy is not None and total:
        judged = True
        if correct < spec.min_catch_accuracy * total - 1e-9:
            reasons.append(
                f"{correct} of {total} catch trial(s) right ({correct / total:.0%}; the policy "
                f"asks for at least {spec.min_catch_accuracy:.0%})"
            )
    if spec.min_median_response_ms is not None and median is not None:
        judged = True
        if median < spec.min_median_response_ms:
            reasons.append(
                f"median response time {median:.0f} ms (the policy asks for at least "
                f"{spec.min_median_response_ms} ms)"
            )
    if reasons:
        outcome = AttentionOutcome.failed_attention
    else:
        outcome = AttentionOutcome.passed if judged else AttentionOutcome.not_applicable
    return Assessment(outcome, correct, total, median, len(times), tuple(reasons))


def note(detail: dict[str, Any] | None, outcome: AttentionOutcome | str | None) -> str:
    """One line for people: the reasons of a failure, or the numbers of a pass."""
    if detail is None or outcome is None:
        return ""
    value = getattr(outcome, "value", outcome)
    if value == AttentionOutcome.failed_attention.value:
        return f"policy v{detail['policy_version']}: " + "; ".join(detail["reasons"])
    parts = []
    if detail.get("catch_total"):
        parts.append(f"{detail['catch_correct']} of {detail['catch_total']} catch trial(s) right")
    if detail.get("median_response_ms") is not None:
        parts.append(f"median response time {detail['median_response_ms']:.0f} ms")
    elif detail.get("min_median_response_ms") is not None:
        parts.append("no response times sent: time not judged")
    return f"policy v{detail['policy_version']}: " + ("; ".join(parts) or "nothing to judge")


def current_policy(session: Session, *, study_id: int) -> AttentionPolicy | None:
    return session.scalar(_CURRENT_POLICY, {"study_id": study_id})


def policy_question(*, study_id: int) -> Call:
    """The current policy as a row of its id, version and minimums (what judging needs; no
    row: none), as a statement the submission sends with others (`rendered.execute_together`)."""
    return _CURRENT_POLICY_COLUMNS, {"study_id": study_id}


# Built once (each submission asks): building a statement cost more than running it.
_CURRENT_POLICY = (
    select(AttentionPolicy)
    .where(AttentionPolicy.study_id == bindparam("study_id"))
    .order_by(AttentionPolicy.version.desc())
    .limit(1)
)
_CURRENT_POLICY_COLUMNS = _CURRENT_POLICY.with_only_columns(
    AttentionPolicy.id,
    AttentionPolicy.version,
    AttentionPolicy.min_catch_accuracy,
    AttentionPolicy.min_median_response_ms,
)


def add_policy(
    session: Session, *, study_id: int, spec: PolicySpec, origin: str, note: str | None = None
) -> AttentionPolicy:
    """The study's next policy version (in the caller's transaction), recorded as an event."""
    latest = session.scalar(
        select(func.max(AttentionPolicy.version)).where(AttentionPolicy.study_id == study_id)
    )
    row = AttentionPolicy(
        study_id=study_id,
        version=(latest or 0) + 1,
        min_catch_accuracy=spec.min_catch_accuracy,
        min_median_response_ms=spec.min_median_response_ms,
        origin=origin,
        note=note,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        kind="attention_policy_set",
        study_id=study_id,
        detail={"version": row.version, "policy": spec.describe(), "origin": origin, "note": note},
    )
    return row


def _catch_labels(session: Session, assignment_id: int) -> dict[int, int]:
    """position -> true class of the assignment's catch trials."""
    return dict(
        session.execute(
            select(AssignmentItem.position, Stimulus.original_label)
            .join(Stimulus, Stimulus.id == AssignmentItem.stimulus_id)
            .where(
                AssignmentItem.assignment_id == assignment_id,
                Stimulus.kind == StimulusKind.catch,
            )
        ).all()
    )


def assess(
    session: Session,
    allocation: Allocation,
    *,
    labels: Sequence[tuple[int, int, int | None]],
    policy: AttentionPolicy | None,
) -> None:
    """Judge a submission (position, label, response_ms per item) and store the outcome on
    its allocation, in the caller's transaction. No policy at all: not_applicable."""
    truth = {} if policy is None else _catch_labels(session, allocation.assignment_id)
    allocation.attention, allocation.attention_detail, allocation.attention_policy_id = verdict(
        labels=labels, policy=policy, catch_truth=truth
    )


def verdict(
    *,
    labels: Sequence[tuple[int, int, int | None]],
    policy: Any,
    catch_truth: Mapping[int, int],
) -> tuple[AttentionOutcome, dict[str, Any] | None, int | None]:
    """What is stored on a submission's allocation: the outcome, its numbers, the policy's id.
    `policy` is an `AttentionPolicy` or a row with its columns, or None (not_applicable);
    `catch_truth` maps each catch trial's position to its true class."""
    if policy is None:
        return AttentionOutcome.not_applicable, None, None
    given = {position: label for position, label, _ in labels}
    assessment = judge(
        PolicySpec.of(policy),
        catch_right=[given.get(position) == true for position, true in sorted(catch_truth.items())],
        response_ms=[ms for _, _, ms in labels],
    )
    return assessment.outcome, assessment.detail(policy), policy.id


@dataclass(frozen=True)
class Reevaluation:
    policy_version: int
    judged: int
    changed: dict[str, int]  # "passed -> failed_attention": n
    outcomes: dict[str, int]


def reevaluate(session: Session, *, study_id: int) -> Reevaluation:
    """Judge every stored submission of the study by its current policy again (in the
    caller's transaction); what changed is recorded in the audit of events."""
    policy = current_policy(session, study_id=study_id)
    allocations = session.scalars(
        select(Allocation)
        .where(Allocation.study_id == study_id, Allocation.status == AllocationStatus.submitted)
        .order_by(Allocation.id)
        .with_for_update()
    ).all()
    labels: dict[int, list[tuple[int, int, int | None]]] = {}
    for allocation_id, position, label, response_ms in session.execute(
        select(Label.allocation_id, Label.position, Label.label, Label.response_ms).where(
            Label.allocation_id.in_([a.id for a in allocations])
        )
    ):
        labels.setdefault(allocation_id, []).append((position, label, response_ms))
    changed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    judged = 0
    for allocation in allocations:
        if allocation.id not in labels:  # labels archived elsewhere: keep the earlier verdict
            continue
        before = allocation.attention.value if allocation.attention else "none"
        assess(session, allocation, labels=labels[allocation.id], policy=policy)
        after = allocation.attention.value if allocation.attention else "none"
        judged += 1
        outcomes[after] += 1
        if before != after:
            changed[f"{before} -> {after}"] += 1
    version = policy.version if policy else 0
    record_event(
        session,
        kind="attention_reevaluated",
        study_id=study_id,
        detail={
            "policy_version": version,
            "judged": judged,
            "changed": dict(changed),
            "outcomes": dict(outcomes),
        },
    )
    return Reevaluation(
        version, judged, dict(sorted(changed.items())), dict(sorted(outcomes.items()))
    )
