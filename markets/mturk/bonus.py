"""`mturk bonus`: pay a bonus per assignment, exactly once, whatever happens in between.

A bonus is money sent without a HIT to carry it, so every safeguard of publishing applies:

1. The database: each (assignment, purpose) has one `mturk_bonuses` row, written *pending*
   before the SendBonus call and *paid* after it. A paid row is never paid again.
2. ``UniqueRequestToken``: derived from the study's manifest hash, the marketplace, the
   assignment and the purpose, never from the clock, so a retry within MTurk's 24-hour token
   memory cannot pay twice (MTurk answers with an error instead).
3. A row still *pending* when a run starts (a crash between the call and the bookkeeping,
   possibly more than 24 hours ago) is first looked up in ListBonusPayments for that
   assignment: a bonus of the same amount and reason there means it was paid, and it is only
   recorded. Only a pending row MTurk does not list is sent again.

The purpose names what the bonus is for (e.g. "completion", "attention"): two different
purposes are two bonuses, the same purpose twice is one.

Who gets one: named assignments, every submission MTurk confirmed (`--all-confirmed`), or
every confirmed submission that passed the study's attention policy (`--passed-attention`:
`passed` only; a submission the policy had nothing to judge, `not_applicable`, is not
"passed" and is counted apart in the plan).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.publish import CENT, marketplace_name
from markets.mturk.store import mturk_assignments, study_hit_ids
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    AttentionOutcome,
    BonusStatus,
    MTurkAssignment,
    MTurkBonus,
    Study,
    Verification,
)
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event, utc_now

PURPOSE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_REASON = 10
MAX_BONUS = Decimal("100.00")
# Work that was handed in: MTurk pays bonuses on submitted (and reviewed) assignments only.
BONUSABLE = ("Submitted", "Approved")


class BonusRefused(ValueError):
    """The request cannot be acted on as given (unknown assignment, bad amount...)."""


class BonusDeclined(Exception):
    """The person at the terminal did not confirm the cost: nothing was paid."""


def bonus_token(study: Study, *, assignment_id: str, purpose: str, sandbox: bool) -> str:
    key = f"advcritic-bonus|{study.manifest_sha256}|{marketplace_name(sandbox)}|"
    key += f"{assignment_id}|{purpose}"
    return "advcritic-bonus-" + hashlib.sha256(key.encode()).hexdigest()[:46]


@dataclass(frozen=True)
class BonusTarget:
    assignment_id: str
    worker_id: str


@dataclass(frozen=True)
class BonusPlan:
    """What a run pays, shown (and on the live site confirmed) before any money moves."""

    study_slug: str
    sandbox: bool
    purpose: str
    amount: Decimal
    fee_fraction: Decimal
    targets: tuple[BonusTarget, ...]
    already_paid: int
    # With --passed-attention: confirmed submissions left out, by attention outcome.
    not_passed: dict[str, int] = field(default_factory=dict)

    @property
    def fee_per_bonus(self) -> Decimal:
        return (self.amount * self.fee_fraction).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def total_cost(self) -> Decimal:
        return (self.amount + self.fee_per_bonus) * len(self.targets)

    def describe(self) -> str:
        where = "the MTurk sandbox (no money is spent)" if self.sandbox else "LIVE MTurk"
        left_out = ", ".join(f"{outcome} {n}" for outcome, n in sorted(self.not_passed.items()))
        return (
            f"study {self.study_slug}: {len(self.targets)} bonus(es) '{self.purpose}' on {where} "
            f"({self.already_paid} already paid"
            + (f"; not passed the attention policy: {left_out}" if left_out else "")
            + f"); {len(self.targets)} x (${self.amount:.2f} "
            f"+ ${self.fee_per_bonus:.2f} fee) = ${self.total_cost:.2f}"
        )


@dataclass
class BonusReport:
    plan: BonusPlan
    paid: list[str] = field(default_factory=list)
    found_paid: list[str] = field(default_factory=list)  # pending rows MTurk had paid already
    failed: list[tuple[str, str]] = field(default_factory=list)


def check_request(amount: Decimal, reason: str, purpose: str) -> None:
    if not CENT <= amount <= MAX_BONUS or amount != amount.quantize(CENT):
        raise BonusRefused(
            f"--amount {amount}: give dollars and cents between 0.01 and {MAX_BONUS}"
        )
    if len(reason.strip()) < MIN_REASON:
        raise BonusRefused(
            f"--reason {reason!r}: workers see it; write at least {MIN_REASON} characters"
        )
    if not PURPOSE_PATTERN.match(purpose):
        raise BonusRefused(
            f"--purpose {purpose!r}: lowercase letters, digits, '-' and '_', at most 64"
        )


def plan_bonus(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    fee_fraction: Decimal,
    study_slug: str,
    amount: Decimal,
    reason: str,
    purpose: str,
    assignment_ids: Sequence[str] = (),
    every_confirmed: bool = False,
    passed_attention: bool = False,
) -> BonusPlan:
    """The bonuses a run would pay: the named assignments, every confirmed submission, or
    every confirmed submission that passed the attention policy."""
    check_request(amount, reason, purpose)
    if sum((bool(assignment_ids), every_confirmed, passed_attention)) != 1:
        raise BonusRefused(
            "name assignments (--assignment ID ...), or pass --all-confirmed or "
            "--passed-attention (one of them)"
        )
    sandbox = client.sandbox
    with sessions() as session:
        study = find_study(session, study_slug, list_known=True)
        hits = [h for h, box in study_hit_ids(session, study_id=study.id).items() if box == sandbox]
        known = mturk_assignments(session, hit_ids=hits)
        not_passed: dict[str, int] = {}
        if assignment_ids:
            chosen = _named(known, assignment_ids)
        else:
            chosen = _confirmed(
                session, study, known, passed_only=passed_attention, not_passed=not_passed
            )
        rows = {
            row.mturk_assignment_id: row
            for row in session.scalars(
                select(MTurkBonus).where(
                    MTurkBonus.study_id == study.id, MTurkBonus.purpose == purpose
                )
            )
        }
    for assignment in chosen:
        row = rows.get(assignment.mturk_assignment_id)
        if row is not None and (row.amount != amount or row.reason != reason.strip()):
            raise BonusRefused(
                f"assignment {assignment.mturk_assignment_id} already has a '{purpose}' bonus "
                f"of ${row.amount:.2f} ({row.status.value}); a purpose is paid once, so use the "
                "same amount and reason to finish it, or another --purpose"
            )
    paid = {i for i, row in rows.items() if row.status == BonusStatus.paid}
    targets = tuple(
        BonusTarget(a.mturk_assignment_id, a.worker_external_id)
        for a in chosen
        if a.mturk_assignment_id not in paid
    )
    return BonusPlan(
        study_slug=study.slug,
        sandbox=sandbox,
        purpose=purpose,
        amount=amount,
        fee_fraction=fee_fraction,
        targets=targets,
        already_paid=len(chosen) - len(targets),
        not_passed=not_passed,
    )


def _named(known: dict[str, MTurkAssignment], ids: Sequence[str]) -> list[MTurkAssignment]:
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise BonusRefused(
            "not assignments of this study on this marketplace (run `mturk sync` first?): "
            + ", ".join(unknown)
        )
    closed = [f"{i} ({known[i].status})" for i in ids if known[i].status not in BONUSABLE]
    if closed:
        raise BonusRefused(f"only submitted or approved work earns a bonus: {', '.join(closed)}")
    return [known[i] for i in dict.fromkeys(ids)]


def _confirmed(
    session: Session,
    study: Study,
    known: dict[str, MTurkAssignment],
    *,
    passed_only: bool = False,
    not_passed: dict[str, int] | None = None,
) -> list[MTurkAssignment]:
    """Every submission MTurk confirmed and nobody rejected (that passed the attention
    policy, with `passed_only`; the others are counted into `not_passed` by outcome)."""
    confirmed = session.execute(
        select(Allocation.mturk_assignment_id, Allocation.attention).where(
            Allocation.study_id == study.id,
            Allocation.status == AllocationStatus.submitted,
            Allocation.verification == Verification.confirmed,
        )
    ).all()
    chosen = []
    for assignment_id, outcome in sorted(confirmed, key=lambda row: row[0]):
        if assignment_id not in known or known[assignment_id].status not in BONUSABLE:
            continue
        if passed_only and outcome != AttentionOutcome.passed:
            if not_passed is not None:
                key = outcome.value if outcome else "not judged"
                not_passed[key] = not_passed.get(key, 0) + 1
            continue
        chosen.append(known[assignment_id])
    return chosen


def pay_bonus(
    *,
    sessions: sessionmaker[Session],
    client: MTurkClient,
    plan: BonusPlan,
    reason: str,
    confirm: Callable[[BonusPlan], bool] = lambda plan: True,
) -> BonusReport:
    """Pays the plan's bonuses; each is recorded before and after its call."""
    report = BonusReport(plan)
    if not plan.targets:
        return report
    if not confirm(plan):
        raise BonusDeclined(f"not confirmed; nothing paid ({plan.describe()})")
    balance = client.balance()
    if balance.available < plan.total_cost:
        raise errors.InsufficientFunds(
            f"the {marketplace_name(plan.sandbox)} balance is ${balance.available:.2f}, the "
            f"bonuses cost ${plan.total_cost:.2f}; add funds and run the same command again"
        )
    reason = reason.strip()
    for target in plan.targets:
        token, resumed = _record_pending(sessions, plan, target, reason)
        if resumed and _already_listed(client, target, plan.amount, reason):
            _record_paid(sessions, plan, target, found=True)
            report.found_paid.append(target.assignment_id)
            continue
        try:
            client.send_bonus(
                worker_id=target.worker_id,
                assignment_id=target.assignment_id,
                amount=plan.amount,
                reason=reason,
                unique_request_token=token,
            )
        except errors.RequestRejected as error:
            # Also what MTurk says to a token it has seen: if the bonus is listed, it is paid.
            if _already_listed(client, target, plan.amount, reason):
                _record_paid(sessions, plan, target, found=True)
                report.found_paid.append(target.assignment_id)
            else:
                report.failed.append((target.assignment_id, str(error)))
            continue
        _record_paid(sessions, plan, target, found=False)
        report.paid.append(target.assignment_id)
    return report


def _record_pending(
    sessions: sessionmaker[Session], plan: BonusPlan, target: BonusTarget, reason: str
) -> tuple[str, bool]:
    """Writes the pending row, committed before the call. Returns its request token and
    whether the row was there already (an earlier run stopped before recording the outcome)."""
    with sessions() as session:
        begin_write(session)
        row = _bonus_row(session, target.assignment_id, plan.purpose)
        if row is not None:
            session.rollback()
            return row.unique_request_token, True
        study = find_study(session, plan.study_slug)
        token = bonus_token(
            study, assignment_id=target.assignment_id, purpose=plan.purpose, sandbox=plan.sandbox
        )
        session.add(
            MTurkBonus(
                study_id=study.id,
                sandbox=plan.sandbox,
                mturk_assignment_id=target.assignment_id,
                worker_external_id=target.worker_id,
                purpose=plan.purpose,
                amount=plan.amount,
                reason=reason,
                unique_request_token=token,
                status=BonusStatus.pending,
            )
        )
        session.commit()
        return token, False


def _bonus_row(session: Session, assignment_id: str, purpose: str) -> MTurkBonus | None:
    """The (assignment, purpose) bonus row, the unit of "paid once"."""
    return session.scalar(
        select(MTurkBonus).where(
            MTurkBonus.mturk_assignment_id == assignment_id, MTurkBonus.purpose == purpose
        )
    )


def _already_listed(client: MTurkClient, target: BonusTarget, amount: Decimal, reason: str) -> bool:
    return any(
        payment.amount == amount and payment.reason == reason
        for payment in client.iter_bonus_payments(target.assignment_id)
    )


def _record_paid(
    sessions: sessionmaker[Session], plan: BonusPlan, target: BonusTarget, *, found: bool
) -> None:
    with sessions() as session:
        begin_write(session)
        row = _bonus_row(session, target.assignment_id, plan.purpose)
        row.status = BonusStatus.paid
        row.paid_at = utc_now()
        record_event(
            session,
            study_id=row.study_id,
            kind="mturk_bonus_paid",
            worker=target.worker_id,
            detail={
                "assignment": target.assignment_id,
                "purpose": plan.purpose,
                "amount_usd": str(plan.amount),
                "marketplace": marketplace_name(plan.sandbox),
                "found_on_mturk": found,
            },
        )
        session.commit()
