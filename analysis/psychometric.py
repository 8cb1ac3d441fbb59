"""The psychometric view: % change, no change and other as functions of the perturbation size
rho and of the model's confidence, per defense.

Each defense's labels are cut into quantile bins of the variable (equal numbers of labels per
bin, so every point is equally well determined; ties can merge bins), and each bin's shares get
the same annotator-bootstrap intervals as Table 2. Beside the bins, a logistic regression of
"change" on rho (statsmodels GLM, cluster-robust covariance by annotator) gives a smooth curve
and one number per defense: the odds ratio of change per +0.1 of rho, with its 95% interval.
These are population-averaged (marginal) curves: what a randomly chosen annotator does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.agreement import outcome_code
from analysis.clustered import ClusteredShare, cluster_sums, clustered_share
from analysis.labels import LabelRow

VARIABLES = {
    "rho": ("rho", "perturbation size rho = ||r|| / ||x||"),
    "confidence": ("confidence_original", "model's confidence on the original image"),
}
OUTCOMES = ("change", "no_change", "other")


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    mean: float
    labels: int
    shares: dict[str, ClusteredShare | None]

    def as_dict(self) -> dict[str, object]:
        return {
            "low": self.low,
            "high": self.high,
            "mean": self.mean,
            "labels": self.labels,
            **{name: (share.as_dict() if share else None) for name, share in self.shares.items()},
        }


@dataclass(frozen=True)
class Fit:
    """logit P(change) = intercept + slope * rho, population-averaged."""

    intercept: float
    slope: float
    slope_low: float
    slope_high: float
    p_value: float

    def odds_ratio_per(self, step: float = 0.1) -> tuple[float, float, float]:
        return tuple(float(np.exp(v * step)) for v in (self.slope, self.slope_low, self.slope_high))  # type: ignore[return-value]

    def curve(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * x)))

    def as_dict(self) -> dict[str, object]:
        ratio, low, high = self.odds_ratio_per(0.1)
        return {
            "intercept": self.intercept,
            "slope": self.slope,
            "slope_ci95": [self.slope_low, self.slope_high],
            "p_value": self.p_value,
            "odds_ratio_per_0.1_rho": ratio,
            "odds_ratio_ci95": [low, high],
        }


@dataclass(frozen=True)
class Curve:
    variable: str  # "rho" | "confidence"
    bins: list[Bin]
    labels_without: int  # labels whose export lacks the variable
    fit: Fit | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "variable": self.variable,
            "bins": [b.as_dict() for b in self.bins],
            "labels_without_value": self.labels_without,
            "logistic_fit": self.fit.as_dict() if self.fit else None,
        }


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))


def _fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fit | None:
    """Binomial GLM with annotator-clustered (sandwich) covariance; None if it cannot be fit."""
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2 or len(np.unique(groups)) < 2:
        return None
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial())
            result = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
        except (ValueError, np.linalg.LinAlgError):
            return None
    (intercept, slope), (_, (low, high)) = result.params, result.conf_int()
    if not np.all(np.isfinite([intercept, slope, low, high])):
        return None
    return Fit(float(intercept), float(slope), float(low), float(high), float(result.pvalues[1]))


def curves(
    rows: Sequence[LabelRow], *, bins: int = 5, seed: int = 0, resamples: int = 999
) -> list[Curve]:
    """The binned curves (and the rho fit) of one defense's counted adversarial labels."""
    found = []
    annotator_ids = {key: n for n, key in enumerate(sorted({r.annotator for r in rows}))}
    for variable, (attribute, _) in VARIABLES.items():
        known = [r for r in rows if getattr(r, attribute) is not None]
        if not known:
            continue
        values = np.array([getattr(r, attribute) for r in known], dtype=float)
        edges = _edges(values, bins)
        which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))
        made = []
        for index in range(max(len(edges) - 1, 1)):
            members = [r for r, w in zip(known, which, strict=True) if w == index]
            if not members:
                continue
            codes = [outcome_code(r) for r in members]
            shares = {
                name: clustered_share(
                    cluster_sums(
                        (r.annotator, c == code) for r, c in zip(members, codes, strict=True)
                    ),
                    seed=seed + index,
                    resamples=resamples,
                )
                for code, name in enumerate(OUTCOMES)
            }
            inside = values[which == index]
            made.append(
                Bin(
                    float(inside.min()),
                    float(inside.max()),
                    float(inside.mean()),
                    len(members),
                    shares,
                )
            )
        fit = None
        if variable == "rho":
            fit = _fit(
                values,
                np.array([outcome_code(r) == 0 for r in known], dtype=float),
                np.array([annotator_ids[r.annotator] for r in known]),
            )
        found.append(Curve(variable, made, len(rows) - len(known), fit))
    return found
