"""Progress bars for long work (attacks over a test set, downloads), on stderr.

A thin wrapper so every command shows the same kind of bar and tests or scripts can turn
them off with one flag; tqdm itself disables the bar when stderr is not a terminal only if
asked, so callers decide through `enabled`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
) -> Iterator[T]:
    """Iterate over `iterable` with a tqdm bar on stderr when `enabled`."""
    if not enabled:
        yield from iterable
        return
    with tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        yield from bar


def progress_bar(total: int, *, desc: str = "", unit: str = "img", enabled: bool = True) -> tqdm:
    """A manually updated bar (``bar.update(n)``, ``bar.close()``); a silent one when disabled."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        disable=not enabled,
    )
