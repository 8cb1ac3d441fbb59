"""Wilson intervals: closed forms at the edges, and agreement with inverting the score test."""

from __future__ import annotations

import math

import pytest

from analysis.stats import Z_95, Share, wilson_interval


def _score_test_bounds(k: int, n: int) -> tuple[float, float]:
    """The p where |k/n - p| = z sqrt(p(1-p)/n), found by bisection: Wilson's definition."""

    def outside(p: float) -> float:
        return abs(k / n - p) - Z_95 * math.sqrt(p * (1 - p) / n)

    def bisect(lo: float, hi: float) -> float:
        for _ in range(200):
            mid = (lo + hi) / 2
            if (outside(lo) > 0) == (outside(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    center = k / n
    low = 0.0 if k == 0 else bisect(0.0, center)
    high = 1.0 if k == n else bisect(center, 1.0)
    return low, high


@pytest.mark.parametrize(
    ("k", "n"), [(1, 10), (5, 10), (57, 10000), (8799, 10000), (3, 7), (250, 251)]
)
def test_wilson_matches_the_inverted_score_test(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = _score_test_bounds(k, n)
    assert low == pytest.approx(ref_low, abs=1e-9) and high == pytest.approx(ref_high, abs=1e-9)


def test_wilson_at_zero_and_all_has_the_closed_form_and_stays_in_0_1():
    z2 = Z_95**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0)])
def test_impossible_counts_are_refused(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_share_reports_percent_and_interval():
    share = Share(3, 4)
    assert share.percent == 75.0
    low, high = share.interval_percent
    assert low < 75.0 < high and share.contains_percent(75.0) and not share.contains_percent(10.0)
    assert share.as_dict()["count"] == 3 and share.as_dict()["total"] == 4
