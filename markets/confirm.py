"""Before real money moves: the total shown, and typed back (or given as --confirm-cost).

Shared by every market command that spends money (publishing, bonuses), so the rule is the
same everywhere: on a live market nothing is spent until the person at the terminal has
typed the exact total, or passed it with `--confirm-cost` in a script; the sandbox spends
nothing and asks nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Protocol

from contract.cli import UsageError


class CostPlan(Protocol):
    sandbox: bool

    @property
    def total_cost(self) -> Decimal: ...

    def describe(self) -> str: ...


def cost_confirmation(
    confirm_cost: str | None, *, action: str, say: Callable[[str], None] = print
) -> Callable[[CostPlan], bool]:
    """A `confirm(plan)` callback: True once the live total is agreed; UsageError when a
    given --confirm-cost is malformed or differs, or nobody is at a terminal to type it."""

    def confirm(plan: CostPlan) -> bool:
        if plan.sandbox:
            return True
        total = f"{plan.total_cost:.2f}"
        say(f"About to {action} on the LIVE market: {plan.describe()}")
        if confirm_cost is not None:
            try:
                agreed = Decimal(confirm_cost.lstrip("$"))
            except InvalidOperation as error:
                raise UsageError(
                    f"--confirm-cost must be an amount like {total}, got {confirm_cost!r}"
                ) from error
            if agreed != plan.total_cost:
                raise UsageError(
                    f"--confirm-cost {confirm_cost} does not match the total cost ${total}; "
                    "nothing spent"
                )
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{action} on the live market needs confirmation: rerun with "
                             f"--confirm-cost {total}")  # fmt: skip
        answer = input(f"Type the total cost ({total}) to {action}, anything else to stop: ")
        return answer.strip().lstrip("$") == total

    return confirm
