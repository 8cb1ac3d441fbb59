"""How often the 95% intervals cover the truth, on simulated studies with a known answer.

    python -m analysis.coverage [--studies 400] [--seed 0]

For each scenario (change rate, how much people and images differ, annotators per defense),
`--studies` studies are simulated (analysis/simulate.py) and analysed: the share of them whose
interval holds the true % change, for the annotator bootstrap and for Wilson's interval, and
for the difference between two defenses (between- and within-subject) the coverage of its
interval and how often the permutation test rejects a true null at 5%. docs/analysis.md shows
the output; tests/analysis/test_clustered.py runs a small version on every commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from analysis.clustered import clustered_share, compare_shares
from analysis.simulate import Annotators, Arm, Design, StimulusSet, simulate_counts
from analysis.stats import wilson_interval

SHARE_SCENARIOS = (
    # change rate, annotator SD, image SD, annotators, k
    (0.60, 1.0, 1.0, 400, 1),
    (0.60, 1.0, 1.0, 100, 1),
    (0.60, 1.0, 1.0, 30, 1),
    (0.60, 1.0, 1.0, 10, 1),
    (0.05, 1.0, 1.0, 100, 1),
    (0.90, 1.5, 1.0, 100, 1),
    (0.60, 0.0, 0.0, 100, 1),
    (0.60, 1.0, 1.0, 120, 3),
)
DIFFERENCE_SCENARIOS = (
    # rates, annotator SD, annotators per defense, interleaved
    ((0.6, 0.6), 1.0, 60, False),
    ((0.6, 0.6), 1.0, 60, True),
    ((0.7, 0.6), 1.0, 60, False),
    ((0.7, 0.6), 1.0, 60, True),
)


def _sums(change: np.ndarray, labels: np.ndarray) -> dict[int, tuple[int, int]]:
    return {a: (int(change[a]), int(labels[a])) for a in range(len(labels)) if labels[a]}


def share_coverage(
    rate: float, sd: float, image_sd: float, annotators: int, k: int, *, studies: int, seed: int
) -> tuple[float, float, float, float]:
    """(bootstrap coverage, Wilson coverage, mean bootstrap half-width, design effect).

    With k > 1 the bundle has exactly the images the study labels k times each, as when
    a study labels all of its bundle: Table 2 is about these images, not a sample of them.
    """
    images = 2500 if k == 1 else annotators * 25 // k
    stimuli = StimulusSet.synthetic(images, seed=seed + 1)
    model = Annotators(rate, change_slope=4.0, annotator_sd=sd, image_sd=image_sd)
    truth = model.expected_shares(stimuli)["change"]
    design = Design(assignments=annotators, labels_per_image=k)
    counts = simulate_counts([Arm(stimuli, model)], design, replicates=studies, seed=seed)
    hits = np.zeros(2)
    widths, deffs = [], []
    for r in range(studies):
        share = clustered_share(_sums(counts.change[r, :, 0], counts.labels[:, 0]), seed=r)
        low, high = wilson_interval(share.count, share.total)
        hits += (share.low <= truth <= share.high, low <= truth <= high)
        widths.append((share.high - share.low) / 2)
        if share.design_effect is not None:
            deffs.append(share.design_effect)
    return (*(hits / studies), float(np.mean(widths)), float(np.mean(deffs)))


def difference_coverage(
    rates: tuple[float, float],
    sd: float,
    annotators: int,
    interleaved: bool,
    *,
    studies: int,
    seed: int,
) -> tuple[float, float]:
    """(interval coverage of the true difference, share of studies with p < 0.05)."""
    stimuli = StimulusSet.synthetic(2500, seed=seed + 1)
    arms = [Arm(stimuli, Annotators(rate, annotator_sd=sd)) for rate in rates]
    truth = (
        arms[0].annotators.expected_shares(stimuli)["change"]
        - arms[1].annotators.expected_shares(stimuli)["change"]
    )
    design = Design(assignments=annotators, interleaved=interleaved)
    counts = simulate_counts(arms, design, replicates=studies, seed=seed)
    covered = rejected = 0
    for r in range(studies):
        d = compare_shares(
            _sums(counts.change[r, :, 0], counts.labels[:, 0]),
            _sums(counts.change[r, :, 1], counts.labels[:, 1]),
            seed=r,
            resamples=999,
            permutations=999,
        )
        covered += d.low <= truth <= d.high
        rejected += d.p_value < 0.05
    return covered / studies, rejected / studies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.coverage", description=__doc__)
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"95% intervals of % change, {args.studies} simulated studies each (25 labels a person)")
    print()
    print("| change rate | annotator SD | image SD | annotators | k | annotator bootstrap | "
          "Wilson | mean half-width (pp) | design effect |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate, sd, image_sd, annotators, k in SHARE_SCENARIOS:
        boot, wilson, width, deff = share_coverage(
            rate, sd, image_sd, annotators, k, studies=args.studies, seed=args.seed
        )
        print(f"| {rate} | {sd} | {image_sd} | {annotators} | {k} | {boot:.1%} | {wilson:.1%} | "
              f"{100 * width:.2f} | {deff:.2f} |")  # fmt: skip
    print()
    print("Ours - baseline in % change (annotator SD 1, image SD 1, 999 resamples/permutations)")
    print()
    print("| rates | annotators per defense | design | CI coverage | p < 0.05 |")
    print("|---|---:|---|---:|---:|")
    for rates, sd, annotators, interleaved in DIFFERENCE_SCENARIOS:
        covered, rejected = difference_coverage(
            rates, sd, annotators, interleaved, studies=args.studies, seed=args.seed
        )
        design = "within-subject" if interleaved else "between-subject"
        print(
            f"| {rates[0]} vs {rates[1]} | {annotators} | {design} | {covered:.1%} | {rejected:.1%} |"
        )
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
