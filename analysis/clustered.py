"""Intervals and comparisons that respect who gave the labels: a cluster bootstrap over annotators.

The 25 labels of one assignment come from one person, and people differ in how readily they
see the target class in a perturbed digit. Labels are therefore correlated within a person,
and a Wilson interval, which treats 10,000 labels as 10,000 independent coin flips, is too
narrow. Here the unit that is resampled is the annotator with all of their labels:

- a share (e.g. % change) is the ratio estimator sum(successes) / sum(labels) over annotators,
  and its 95% interval is scipy's BCa bootstrap over annotators (`scipy.stats.bootstrap`,
  `paired=True` so an annotator's successes and totals travel together);
- a difference between two defenses is bootstrapped the same way: over the annotators who saw
  both when the experiment was interleaved (paired, within-subject), or over each defense's
  annotators separately when no one saw both (two independent samples);
- its p-value is a permutation test on annotators (`scipy.stats.permutation_test`): within-
  subject, each annotator's two sets of labels swap defenses at random (a sign flip); between
  subjects, whole annotators are dealt to the two defenses at random.

docs/analysis.md says why this method and not a mixed model or GEE, and shows its coverage on
simulated studies with a known answer (tests/analysis/test_clustered.py checks it).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from analysis.stats import wilson_interval

RESAMPLES = 1999  # bootstrap resamples: Monte Carlo error of a 95% bound ~0.1 percentage point
PERMUTATIONS = 4999  # two-sided permutation p-values resolve down to 4e-4
MIN_ANNOTATORS = 2  # fewer and there is no between-annotator variation to measure


def _ratio(successes: np.ndarray, totals: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return successes.sum(axis=axis) / totals.sum(axis=axis)


def cluster_sums(
    pairs: Iterable[tuple[Hashable, bool]],
) -> dict[Hashable, tuple[int, int]]:
    """(successes, labels) per cluster from (cluster, success) pairs."""
    sums: dict[Hashable, list[int]] = {}
    for cluster, success in pairs:
        entry = sums.setdefault(cluster, [0, 0])
        entry[0] += int(success)
        entry[1] += 1
    return {key: (s, n) for key, (s, n) in sums.items()}


def _arrays(by_cluster: Mapping[Hashable, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(by_cluster, key=repr)  # a fixed order: the same data give the same interval
    successes = np.array([by_cluster[k][0] for k in keys], dtype=float)
    totals = np.array([by_cluster[k][1] for k in keys], dtype=float)
    return successes, totals


def linearized_variance(successes: np.ndarray, totals: np.ndarray) -> float:
    """The cluster-robust (sandwich) variance of sum(s)/sum(n), with the C/(C-1) correction."""
    clusters = len(totals)
    if clusters < 2:
        return float("nan")
    p = successes.sum() / totals.sum()
    residuals = successes - p * totals
    return float(clusters / (clusters - 1) * (residuals**2).sum() / totals.sum() ** 2)


@dataclass(frozen=True)
class ClusteredShare:
    """A share with its 95% interval from the annotator bootstrap (fractions, not percent)."""

    count: int
    total: int
    annotators: int
    low: float
    high: float
    method: str  # "annotator bootstrap (BCa)", or the fallback used and why
    design_effect: float | None  # clustered variance / binomial variance (1: no clustering)

    @property
    def fraction(self) -> float:
        return self.count / self.total

    @property
    def interval_percent(self) -> tuple[float, float]:
        return 100.0 * self.low, 100.0 * self.high

    def contains_percent(self, value: float) -> bool:
        low, high = self.interval_percent
        return low <= value <= high

    def as_dict(self) -> dict[str, object]:
        return {
            "percent": 100.0 * self.fraction,
            "ci95_low": 100.0 * self.low,
            "ci95_high": 100.0 * self.high,
            "annotators": self.annotators,
            "design_effect": self.design_effect,
            "method": self.method,
        }


def clustered_share(
    by_cluster: Mapping[Hashable, tuple[int, int]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> ClusteredShare | None:
    """The share sum(successes) / sum(labels) with an annotator-bootstrap 95% interval.

    `by_cluster` maps each annotator to (successes, labels). None when fewer than
    MIN_ANNOTATORS annotators gave labels. When every label is a success or none is, the
    bootstrap has nothing to resample (every resample gives 0% or 100%): the interval is then
    Wilson's with one observation per annotator, as if each person's labels were perfectly
    correlated, the conservative end, and `method` says so.
    """
    successes, totals = _arrays({k: v for k, v in by_cluster.items() if v[1] > 0})
    clusters = len(totals)
    if clusters < MIN_ANNOTATORS:
        return None
    count, total = int(successes.sum()), int(totals.sum())
    p = count / total
    binomial = p * (1 - p) / total
    design_effect = linearized_variance(successes, totals) / binomial if binomial > 0 else None
    if count in (0, total):
        low, high = wilson_interval(0 if count == 0 else clusters, clusters)
        return ClusteredShare(
            count, total, clusters, low, high,
            "Wilson on annotators (all labels alike: nothing to bootstrap)", design_effect,
        )  # fmt: skip
    low, high, method = _bootstrap_interval(
        (successes, totals), _ratio, paired=True, seed=seed, resamples=resamples
    )
    return ClusteredShare(count, total, clusters, low, high, method, design_effect)


def _bootstrap_interval(
    data: tuple[np.ndarray, ...],
    statistic,
    *,
    paired: bool,
    seed: int,
    resamples: int,
) -> tuple[float, float, str]:
    """BCa, or the percentile interval where BCa is undefined (a degenerate jackknife)."""
    from scipy import stats  # here, not at import: `analyze-study --help` stays quick

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")  # DegenerateDataWarning: handled below
            result = stats.bootstrap(
                data,
                statistic,
                n_resamples=resamples,
                paired=paired,
                vectorized=True,
                axis=-1,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high), f"annotator bootstrap ({method})"
    return float("nan"), float("nan"), "annotator bootstrap failed"


@dataclass(frozen=True)
class Difference:
    """first - second in a share (fractions), with its interval and a two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float
    design: str  # "within-subject" | "between-subject"
    shared_annotators: int
    annotators: tuple[int, int]
    method: str

    def as_dict(self) -> dict[str, object]:
        return {
            "difference_pct": 100.0 * self.estimate,
            "ci95_low": 100.0 * self.low,
            "ci95_high": 100.0 * self.high,
            "p_value": self.p_value,
            "design": self.design,
            "shared_annotators": self.shared_annotators,
            "annotators": list(self.annotators),
            "method": self.method,
        }


def compare_shares(
    first: Mapping[Hashable, tuple[int, int]],
    second: Mapping[Hashable, tuple[int, int]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    permutations: int = PERMUTATIONS,
) -> Difference | None:
    """share(first) - share(second), each given as {annotator: (successes, labels)}.

    Annotators present in both are what makes the comparison within-subject: then the
    bootstrap and the permutation test work on the union of annotators, each carrying their
    labels for both defenses. Without any shared annotator they are two independent samples.
    None when either side has fewer than MIN_ANNOTATORS annotators.
    """
    first = {k: v for k, v in first.items() if v[1] > 0}
    second = {k: v for k, v in second.items() if v[1] > 0}
    if len(first) < MIN_ANNOTATORS or len(second) < MIN_ANNOTATORS:
        return None
    shared = set(first) & set(second)
    if shared:
        union = sorted(set(first) | set(second), key=repr)
        s1, n1 = (np.array([first.get(k, (0, 0))[i] for k in union], float) for i in (0, 1))
        s2, n2 = (np.array([second.get(k, (0, 0))[i] for k in union], float) for i in (0, 1))
        x, y = np.arange(len(union)), len(union) + np.arange(len(union))
        design, paired, permutation_type = "within-subject", True, "samples"
    else:
        s1, n1 = _arrays(first)
        s2, n2 = _arrays(second)
        x, y = np.arange(len(n1)), len(n1) + np.arange(len(n2))
        design, paired, permutation_type = "between-subject", False, "independent"
    successes, totals = np.concatenate([s1, s2]), np.concatenate([n1, n2])

    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        a, b = a.astype(int), b.astype(int)
        return _ratio(successes[a], totals[a], axis) - _ratio(successes[b], totals[b], axis)

    from scipy import stats

    estimate = float(difference(x, y))
    low, high, method = _bootstrap_interval(
        (x.astype(float), y.astype(float)), difference, paired=paired, seed=seed,
        resamples=resamples,
    )  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        test = stats.permutation_test(
            (x.astype(float), y.astype(float)),
            difference,
            permutation_type=permutation_type,
            vectorized=True,
            n_resamples=permutations,
            axis=-1,
            rng=np.random.default_rng(seed + 1),
        )
    return Difference(
        estimate=estimate,
        low=low,
        high=high,
        p_value=float(test.pvalue),
        design=design,
        shared_annotators=len(shared),
        annotators=(len(first), len(second)),
        method=f"{method}; permutation test over annotators ({permutation_type})",
    )
