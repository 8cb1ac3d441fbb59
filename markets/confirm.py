"""Confirming a cost before money is spent: the same rule for every market command.

`mturk publish --live`, `prolific publish` and `prolific bonus` show what they will cost,
then go on only if the person types that exact total at the prompt, or passed it as
`--confirm-cost`. Anything else at the prompt stops (nothing spent). Without a terminal and
without `--confirm-cost` it is bad input (exit 2) naming the amount to pass, so a script
never spends by default; a `--confirm-cost` that is not the total is bad input too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Protocol

from contract.cli import UsageError

CURRENCY_SYMBOLS = {"USD": "$", "GBP": "£"}


def money(amount: Decimal, currency: str = "USD") -> str:
    """`$2.40`, `£5.33`; the ISO code after the number for other currencies."""
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{amount:.2f}" if symbol else f"{amount:.2f} {currency}"


def confirm_total(
    total: Decimal,
    *,
    agreed: str | None,
    currency: str = "USD",
    verb: str = "publish",
    nothing: str = "nothing published",
) -> bool:
    """Whether the person agreed to spend exactly `total` (see the module's rule); `verb` and
    `nothing` word the prompt and the refusal ("pay", "nothing paid")."""
    text = f"{total:.2f}"
    if agreed is not None:
        try:
            value = Decimal(agreed.strip().lstrip("$£"))
        except InvalidOperation as error:
            raise UsageError(
                f"--confirm-cost must be an amount in {currency} like {text}, got {agreed!r}"
            ) from error
        if value != total:
            raise UsageError(
                f"--confirm-cost {agreed} does not match the total cost {money(total, currency)}; "
                f"{nothing}"
            )
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"spending real money needs confirmation: rerun with --confirm-cost {text}"
        )
    answer = input(f"Type the total cost ({text}) to {verb}, anything else to stop: ")
    return answer.strip().lstrip("$£") == text


class CostPlan(Protocol):
    """What a spending command shows before it spends (a publish plan, a bonus plan)."""

    sandbox: bool

    @property
    def total_cost(self) -> Decimal: ...

    def describe(self) -> str: ...


def cost_confirmation(
    confirm_cost: str | None, *, action: str, say: Callable[[str], None] = print
) -> Callable[[CostPlan], bool]:
    """A `confirm(plan)` callback for a market with a sandbox (MTurk): the sandbox spends
    nothing and asks nothing; on the live market the plan is shown and `confirm_total`'s
    rule applies."""

    def confirm(plan: CostPlan) -> bool:
        if plan.sandbox:
            return True
        say(f"About to {action} on the LIVE market: {plan.describe()}")
        return confirm_total(
            plan.total_cost, agreed=confirm_cost, verb=action, nothing="nothing spent"
        )

    return confirm


def confirm_decisions(
    count: int, *, yes: bool, what: str = "decision(s)", say: Callable[[str], None] = print
) -> bool:
    """Whether to carry out `count` proposed decisions (pay, reject): `--yes`, or "yes" typed
    at the prompt. Without a terminal and without `--yes` it is bad input (exit 2), so a
    script never decides by default."""
    if yes or count == 0:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"carrying out {count} {what} needs confirmation: rerun with --yes")
    answer = input(f"Type yes to carry out these {count} {what}, anything else to stop: ")
    if answer.strip().lower() != "yes":
        say("not confirmed: nothing done")
        return False
    return True
