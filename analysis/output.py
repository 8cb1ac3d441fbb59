"""What every `analyze-study` command shares at its edges: where a report goes, and the
money options' parsing (kept apart from `cli.py` so the planning commands use them without
importing the command that dispatches to them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path


def write_output(text: str, out: str | None) -> None:
    """`text` to the file `out` (its folder made), or to standard output."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def decimal_option(name: str) -> Callable[[str], Decimal]:
    """An argparse type for an amount of money: a finite number, 0 or more, as a Decimal
    (never a float, so cents add up); a bad value names the option."""

    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value.is_finite() or value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be 0 or more, got {text!r}")
        return value

    return parse
