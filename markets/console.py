"""What the market commands print: one line at a time, counts as `Status n, Status m`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO


def say(message: str, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stdout, flush=True)


def counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"
