"""Proportions with 95% Wilson score intervals.

Wilson rather than the normal approximation because the interesting shares sit near 0% and
100% (the reference network's "change" is 0.57% in the paper), where p +- 1.96*sqrt(p(1-p)/n)
leaves [0, 1] and collapses to zero width at 0 or n successes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for `successes` out of `total` (total > 0), as fractions."""
    if total <= 0:
        raise ValueError(f"a proportion needs at least one observation, got total={total}")
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be in [0, {total}], got {successes}")
    p = successes / total
    z2 = z * z
    denominator = 1 + z2 / total
    center = (p + z2 / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass(frozen=True)
class Share:
    """`count` of `total`, with its 95% Wilson interval."""

    count: int
    total: int

    @property
    def fraction(self) -> float:
        return self.count / self.total

    @property
    def percent(self) -> float:
        return 100.0 * self.fraction

    @property
    def interval_percent(self) -> tuple[float, float]:
        low, high = wilson_interval(self.count, self.total)
        return 100.0 * low, 100.0 * high

    def contains_percent(self, value: float) -> bool:
        low, high = self.interval_percent
        return low <= value <= high

    def as_dict(self) -> dict[str, float | int]:
        low, high = self.interval_percent
        return {
            "count": self.count,
            "total": self.total,
            "percent": self.percent,
            "ci95_low": low,
            "ci95_high": high,
        }
