"""Several labels per image (k > 1): per-image consensus and how much annotators agree.

- Consensus: an image's outcome is the one a strict majority of its labels give (change, no
  change or other); an image without one (e.g. one change and one no change at k = 2) is
  "no majority". Table 2 per image is the share of images with each consensus, with Wilson
  intervals over images (each image's consensus already pools k different people, so the
  images are the units here).
- Agreement: Fleiss' kappa (statsmodels) on the three outcomes, over the images that have the
  most common number of labels (Fleiss' kappa needs the same number of raters per image),
  with a 95% percentile bootstrap interval over those images.

Kappa is 0 when annotators agree only as often as chance would make them (given how often each
outcome occurs) and 1 when they always agree; Landis & Koch's words for the bands are used in
the sentence the report prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.labels import LabelRow
from analysis.stats import Share

OUTCOME_NAMES = ("change", "no change", "other")
_BANDS = (
    (0.0, "poor (below chance)"),
    (0.20, "slight"),
    (0.40, "fair"),
    (0.60, "moderate"),
    (0.80, "substantial"),
    (1.01, "almost perfect"),
)


def outcome_code(row: LabelRow) -> int:
    """0 change, 1 no change, 2 other."""
    if row.label == row.target:
        return 0
    return 1 if row.label == row.original_label else 2


def strength(kappa: float) -> str:
    """Landis & Koch (1977)'s word for a kappa."""
    if kappa < 0:
        return _BANDS[0][1]
    return next(word for bound, word in _BANDS[1:] if kappa <= bound)


@dataclass(frozen=True)
class Consensus:
    images: int
    labels_per_image: dict[int, int]  # k -> how many images have k labels
    change: Share
    no_change: Share
    other: Share
    no_majority: Share
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    kappa_images: int
    kappa_raters: int

    @property
    def sentence(self) -> str:
        if self.kappa is None:
            return "Agreement not computed: no two images share a number of labels of 2 or more."
        return (
            f"Fleiss' kappa = {self.kappa:.2f} [{self.kappa_low:.2f}, {self.kappa_high:.2f}] on "
            f"change / no change / other over {self.kappa_images} images with "
            f"{self.kappa_raters} labels each: annotators agree {strength(self.kappa)}ly, "
            f"{max(self.kappa, 0):.0%} of the way from the agreement chance alone would give "
            "(at these outcome rates) to perfect agreement."
        ).replace("poor (below chance)ly", "less than chance")

    def as_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "labels_per_image": {str(k): n for k, n in sorted(self.labels_per_image.items())},
            "change": self.change.as_dict(),
            "no_change": self.no_change.as_dict(),
            "other": self.other.as_dict(),
            "no_majority": self.no_majority.as_dict(),
            "fleiss_kappa": self.kappa,
            "fleiss_kappa_ci95": [self.kappa_low, self.kappa_high],
            "kappa_images": self.kappa_images,
            "kappa_raters": self.kappa_raters,
            "interpretation": self.sentence,
        }


def consensus(rows: Sequence[LabelRow], *, seed: int = 0, resamples: int = 999) -> Consensus | None:
    """Per-image majority and agreement; None unless some image has 2 or more labels."""
    by_image: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if row.image is not None:
            by_image.setdefault(row.image, []).append(outcome_code(row))
    if not by_image or max(len(codes) for codes in by_image.values()) < 2:
        return None
    table = np.zeros((len(by_image), 3), dtype=int)
    for n, codes in enumerate(by_image.values()):
        table[n] = np.bincount(codes, minlength=3)
    totals = table.sum(axis=1)
    majority = np.where(table.max(axis=1) * 2 > totals, table.argmax(axis=1), 3)
    counts = np.bincount(majority, minlength=4)
    images = len(by_image)
    shares = [Share(int(c), images) for c in counts]
    sizes = Counter(totals.tolist())
    raters = max((k for k in sizes if k >= 2), key=lambda k: (sizes[k], k))
    rated = table[totals == raters]
    kappa = low = high = None
    if len(rated) >= 2:
        from scipy import stats
        from statsmodels.stats.inter_rater import fleiss_kappa

        kappa = float(fleiss_kappa(rated))

        def statistic(index: np.ndarray) -> float:
            return float(fleiss_kappa(rated[index.astype(int)]))

        with np.errstate(invalid="ignore", divide="ignore"):
            result = stats.bootstrap(
                (np.arange(len(rated), dtype=float),),
                statistic,
                vectorized=False,
                n_resamples=resamples,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
        low, high = (float(v) for v in result.confidence_interval)
    return Consensus(
        images=images,
        labels_per_image=dict(sorted(sizes.items())),
        change=shares[0],
        no_change=shares[1],
        other=shares[2],
        no_majority=shares[3],
        kappa=kappa,
        kappa_low=low,
        kappa_high=high,
        kappa_images=len(rated),
        kappa_raters=raters,
    )
