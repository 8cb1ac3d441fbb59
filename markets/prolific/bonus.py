"""`prolific bonus`: pay confirmed participants a bonus, each once, with the cost confirmed.

Prolific pays bonuses in two steps: `POST /submissions/bonus-payments/` makes a bulk bonus
record (nothing paid yet; Prolific answers with the amount, its fees and VAT), then
`POST /bulk-bonus-payments/{id}/pay/` pays it, and that call is not idempotent: sent twice,
it pays twice. So:

- only participants whose submission `prolific sync` confirmed may get one, with positive
  amounts of at most two decimals; a participant already given a bonus in this study is
  refused unless `--again` (a second bonus is then deliberate);
- the record is created first and Prolific's own total (fees and VAT included) is shown and
  confirmed (typed, or `--confirm-cost`) before anything is paid;
- the workspace's balance must cover Prolific's total before it is even asked for;
- the row says ``paying`` before the pay call and ``paid`` after it, or ``refused`` when
  Prolific answered that it did not pay. A run that stopped in between, or a pay call without
  an answer, leaves ``paying``: those participants count as bonused (no automatic second
  pay), and `prolific status` says which payment to check in the Prolific app.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from markets.confirm import money
from markets.prolific import errors
from markets.prolific.client import ProlificClient
from markets.prolific.models import minor_units
from markets.prolific.store import prolific_work
from markets.prolific.sync import require_published
from study_server.db.models import ProlificBonus, Verification
from study_server.db.session import begin_write
from study_server.db.store import record_event, utc_now

CENT = Decimal("0.01")
# Answers to the pay call after which nothing was paid (anything else, a 5xx or a lost
# answer, leaves the payment `paying`: it may have gone through).
NOT_PAID = (
    errors.BadToken,
    errors.Forbidden,
    errors.NotFound,
    errors.RequestRejected,
    errors.Throttled,
    errors.Unreachable,
)


class BonusRefused(ValueError):
    """Bonuses that cannot be paid as asked (bad input, exit 2): unknown participant, bad
    amount, a participant already given one."""


class BonusDeclined(Exception):
    """The person did not confirm the cost: the bonus record exists on Prolific, unpaid."""


@dataclass(frozen=True)
class BonusPlan:
    """Prolific's figures for the bulk bonus, in the workspace's currency."""

    bulk_id: str
    bonuses: tuple[tuple[str, Decimal], ...]
    amount: Decimal
    fees: Decimal
    vat: Decimal
    total: Decimal


def parse_bonuses(entries: Sequence[str]) -> list[tuple[str, Decimal]]:
    """`PARTICIPANT,AMOUNT` entries (Prolific's own CSV format) as (id, amount) pairs."""
    bonuses: list[tuple[str, Decimal]] = []
    for entry in entries:
        participant, _, raw = entry.partition(",")
        try:
            amount = Decimal(raw.strip())
        except InvalidOperation as error:
            raise BonusRefused(
                f"--bonus {entry!r}: expected PARTICIPANT_ID,AMOUNT like 5f1e...,0.50"
            ) from error
        if not amount.is_finite() or amount <= 0 or amount != amount.quantize(CENT):
            raise BonusRefused(
                f"--bonus {entry!r}: the amount must be positive, with at most two decimals"
            )
        bonuses.append((participant.strip().lower(), amount))
    if not bonuses:
        raise BonusRefused("name at least one --bonus PARTICIPANT_ID,AMOUNT")
    seen = [p for p, _ in bonuses]
    twice = sorted({p for p in seen if seen.count(p) > 1})
    if twice:
        raise BonusRefused(f"participants named twice (one entry each): {', '.join(twice)}")
    return bonuses


def bonus(
    *,
    sessions: sessionmaker[Session],
    client: ProlificClient,
    study_slug: str,
    bonuses: list[tuple[str, Decimal]],
    reason: str,
    again: bool,
    confirm: Callable[[BonusPlan], bool],
    workspace_id: str | None = None,
) -> BonusPlan:
    """Create, confirm, then pay one bulk bonus; see the module."""
    with sessions() as session:
        study_id, published = require_published(session, study_slug)
        _check(session, study_id, bonuses, again)
    csv = "\n".join(f"{participant},{amount}" for participant, amount in bonuses)
    bulk = client.create_bonuses(published.prolific_study_id, csv)
    plan = BonusPlan(
        bulk_id=bulk.id,
        bonuses=tuple(bonuses),
        amount=minor_units(bulk.amount),
        fees=minor_units(bulk.fees),
        vat=minor_units(bulk.vat),
        total=minor_units(bulk.total_amount),
    )
    row = _store(sessions, study_id, plan, reason)
    if workspace_id:
        balance = client.balance(workspace_id)
        available = minor_units(balance.available_balance)
        if available < plan.total:
            _set_status(sessions, row, "declined")
            raise errors.InsufficientFunds(
                f"the workspace's available balance is {money(available, balance.currency_code)}"
                f", these bonuses cost {money(plan.total, balance.currency_code)}; add funds in "
                "the Prolific app; nothing paid"
            )
    try:
        agreed = confirm(plan)
    except BaseException:  # e.g. no --confirm-cost without a terminal: nothing paid
        _set_status(sessions, row, "declined")
        raise
    if not agreed:
        _set_status(sessions, row, "declined")
        raise BonusDeclined(
            f"not confirmed; nothing paid (bulk bonus {bulk.id} stays unpaid on Prolific)"
        )
    _set_status(sessions, row, "paying")
    try:
        client.pay_bonuses(bulk.id)
    except NOT_PAID:
        _set_status(sessions, row, "refused")  # Prolific said no, or never heard of it
        raise
    _set_status(sessions, row, "paid", event=True)
    return plan


def _check(
    session: Session, study_id: int, bonuses: list[tuple[str, Decimal]], again: bool
) -> None:
    confirmed = {
        work.participant_id
        for work in prolific_work(session, study_id=study_id)
        if work.allocation.verification == Verification.confirmed
    }
    unknown = [p for p, _ in bonuses if p not in confirmed]
    if unknown:
        raise BonusRefused(
            "not participants with a confirmed submission in this study (run `prolific sync`): "
            + ", ".join(unknown)
        )
    if again:
        return
    given = {
        participant
        for entries in session.scalars(
            select(ProlificBonus.bonuses).where(
                ProlificBonus.study_id == study_id,
                ProlificBonus.status.in_(("paying", "paid")),
            )
        )
        for participant, _ in entries
    }
    twice = [p for p, _ in bonuses if p in given]
    if twice:
        raise BonusRefused(
            "already given a bonus in this study (pass --again to pay another): " + ", ".join(twice)
        )


def _store(
    sessions: sessionmaker[Session], study_id: int, plan: BonusPlan, reason: str
) -> ProlificBonus:
    with sessions() as session:
        begin_write(session)
        row = ProlificBonus(
            study_id=study_id,
            bulk_id=plan.bulk_id,
            bonuses=[[participant, str(amount)] for participant, amount in plan.bonuses],
            reason=reason,
            amount_minor=int(plan.amount * 100),
            fees_minor=int(plan.fees * 100),
            vat_minor=int(plan.vat * 100),
            total_minor=int(plan.total * 100),
            status="created",
        )
        session.add(row)
        session.commit()
        return row


def _set_status(
    sessions: sessionmaker[Session], row: ProlificBonus, status: str, *, event: bool = False
) -> None:
    with sessions() as session:
        begin_write(session)
        stored = session.get_one(ProlificBonus, row.id)
        stored.status = status
        if status == "paid":
            stored.paid_at = utc_now()
        if event:
            record_event(
                session,
                study_id=stored.study_id,
                kind="prolific_bonus_paid",
                detail={
                    "bulk": stored.bulk_id,
                    "bonuses": stored.bonuses,
                    "total_minor": stored.total_minor,
                    "reason": stored.reason,
                },
            )
        session.commit()
