"""Planning before paying: how many assignments a stated goal needs, and what they cost.

From the stimuli (a bundle or an imported study per defense), simulated annotators with
stated behaviour (analysis/simulate.py) and a design (assignments per defense, items per
assignment, k labels per image, interleaved or not), many replicate studies are simulated at
once and each is analysed the way `analyze-study` does, with one shortcut: the interval
half-width and the test use the cluster-robust (linearised, "sandwich") variance of the same
ratio estimator, whose square root the annotator bootstrap estimates, instead of running
2,000 bootstrap resamples and 5,000 permutations in each of thousands of replicate studies.
tests/analysis/test_plan.py checks the shortcut against the full analysis.

- half-width: the mean 95% half-width of each defense's % change;
- power: the share of replicate studies in which the first defense differs from each other
  one at level alpha (two-sided; alpha is split over the comparisons, Bonferroni, since the
  report adjusts them with Holm);
- assignments needed: the variance of a share falls as 1 / (assignments), so one pilot
  simulation gives the N that meets the goal in closed form; that N is then simulated again
  and raised until the simulation agrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from analysis.labels import AnalysisError
from analysis.simulate import Arm, Design, SimulatedCounts, simulate_counts

PROLIFIC_FEE = Decimal("0.333")  # Prolific's service fee on rewards (check the current rate)


@dataclass(frozen=True)
class Costs:
    """Per assignment: what the worker gets, and the platform's fee as a fraction of it."""

    mturk_reward: Decimal
    mturk_fee: Decimal
    prolific_reward: Decimal
    prolific_fee: Decimal = PROLIFIC_FEE

    def mturk(self, assignments: int) -> Decimal:
        return (self.mturk_reward * (1 + self.mturk_fee) * assignments).quantize(Decimal("0.01"))

    def prolific(self, assignments: int) -> Decimal:
        return (self.prolific_reward * (1 + self.prolific_fee) * assignments).quantize(
            Decimal("0.01")
        )


@dataclass(frozen=True)
class Goal:
    power: float = 0.8
    alpha: float = 0.05
    half_width: float | None = None  # of each defense's % change, as a fraction (0.03 = 3 pp)

    def __post_init__(self) -> None:
        if not 0 < self.power < 1:
            raise AnalysisError(f"--power must be in (0, 1), got {self.power}")
        if not 0 < self.alpha < 1:
            raise AnalysisError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.half_width is not None and not 0 < self.half_width < 0.5:
            raise AnalysisError(f"--half-width must be in (0, 0.5), got {self.half_width}")


@dataclass(frozen=True)
class Evaluation:
    """What `replicates` simulated studies of one design give."""

    assignments: int
    half_width: tuple[float, ...]  # per arm, mean 95% half-width of % change (fraction)
    power: tuple[float, ...]  # per comparison (arm 0 vs arm j), share of significant studies
    sd_difference: tuple[float, ...]  # per comparison: SD of the estimated difference
    images_used: tuple[int, ...]
    replicates: int

    @property
    def worst_power(self) -> float | None:
        return min(self.power) if self.power else None


@dataclass
class Plan:
    arms: list[Arm]
    design: Design
    goal: Goal
    expected: list[dict[str, float]]  # the true shares per arm
    costs: Costs
    evaluations: list[Evaluation]
    needed: int | None
    needed_for: dict[str, int]  # goal -> assignments per defense it alone needs (closed form)
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[float]:
        return [e["change"] - self.expected[0]["change"] for e in self.expected[1:]]


def _variances(counts: SimulatedCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate: estimates and cluster-robust variances of each arm's share, and of the
    differences arm 0 - arm j (annotators who saw both carry both terms: paired)."""
    y, n = counts.change, counts.labels  # (R, A, D), (A, D)
    totals = n.sum(axis=0)  # (D,)
    p = y.sum(axis=1) / totals  # (R, D)
    residual = (y - p[:, None, :] * n[None]) / totals  # (R, A, D)
    involved = (n > 0).sum(axis=0)  # (D,)
    var = involved / (involved - 1) * (residual**2).sum(axis=1)
    diffs, diff_var = [], []
    for j in range(1, n.shape[1]):
        z = residual[:, :, 0] - residual[:, :, j]
        c = ((n[:, 0] > 0) | (n[:, j] > 0)).sum()
        diffs.append(p[:, 0] - p[:, j])
        diff_var.append(c / (c - 1) * (z**2).sum(axis=1))

    def stack(columns: list[np.ndarray]) -> np.ndarray:
        return np.stack(columns, axis=1) if columns else np.zeros((len(p), 0))

    return p, var, stack(diffs), stack(diff_var)


def evaluate(
    arms: Sequence[Arm], design: Design, goal: Goal, *, replicates: int, seed: int
) -> Evaluation:
    from scipy import stats

    counts = simulate_counts(arms, design, replicates=replicates, seed=seed)
    _, var, diffs, diff_var = _variances(counts)
    z = stats.norm.ppf(0.975)
    comparisons = max(1, len(arms) - 1)
    critical = stats.norm.ppf(1 - goal.alpha / (2 * comparisons))
    with np.errstate(divide="ignore", invalid="ignore"):
        significant = np.abs(diffs) > critical * np.sqrt(diff_var)
    return Evaluation(
        assignments=design.assignments,
        half_width=tuple(float(v) for v in (z * np.sqrt(var)).mean(axis=0)),
        power=tuple(float(v) for v in significant.mean(axis=0)),
        sd_difference=tuple(float(v) for v in diffs.std(axis=0)),
        images_used=counts.images_used,
        replicates=replicates,
    )


def _needed(pilot: Evaluation, plan: Plan) -> tuple[int | None, dict[str, int]]:
    """Closed-form N from the pilot: a variance scales as 1 / N."""
    from scipy import stats

    goal, n0 = plan.goal, pilot.assignments
    wants: list[tuple[int, str]] = []
    if goal.half_width is not None:
        widest = max(pilot.half_width)
        wants.append((math.ceil(n0 * (widest / goal.half_width) ** 2), "half-width"))
    if len(plan.arms) > 1:
        comparisons = len(plan.arms) - 1
        critical = stats.norm.ppf(1 - goal.alpha / (2 * comparisons)) + stats.norm.ppf(goal.power)
        for sd, difference in zip(pilot.sd_difference, plan.differences, strict=True):
            if abs(difference) < 1e-9:
                plan.notes.append(
                    "two defenses have the same expected % change: no number of assignments "
                    "gives power against a zero difference"
                )
                continue
            wants.append((math.ceil(n0 * (sd * critical / difference) ** 2), "power"))
    if not wants:
        return None, {}
    by_goal: dict[str, int] = {}
    for n, why in wants:
        by_goal[why] = max(by_goal.get(why, 0), max(2, n))
    return max(by_goal.values()), by_goal


def make_plan(
    arms: Sequence[Arm],
    design: Design,
    goal: Goal,
    costs: Costs,
    *,
    replicates: int = 1000,
    seed: int = 0,
) -> Plan:
    """Evaluate the design as given, find the assignments the goal needs, and a few around."""
    if replicates < 50:
        raise AnalysisError(f"--replicates must be at least 50, got {replicates}")
    plan = Plan(
        arms=list(arms),
        design=design,
        goal=goal,
        expected=[arm.annotators.expected_shares(arm.stimuli) for arm in arms],
        costs=costs,
        evaluations=[],
        needed=None,
        needed_for={},
    )
    pilot = evaluate(arms, design, goal, replicates=replicates, seed=seed)
    plan.evaluations.append(pilot)
    needed, plan.needed_for = _needed(pilot, plan)
    if needed is not None:
        for _ in range(6):  # the closed form is asymptotic: check it, raise N until it holds
            check = evaluate(
                arms,
                replace(design, assignments=needed),
                goal,
                replicates=replicates,
                seed=seed + 1,
            )
            plan.evaluations.append(check)
            short_power = "power" in plan.needed_for and check.worst_power < goal.power - 0.01
            short_width = goal.half_width is not None and max(check.half_width) > goal.half_width
            if not (short_power or short_width):
                break
            needed = math.ceil(needed * 1.1)
        plan.needed = needed
        for n in sorted({max(2, needed // 2), 2 * needed} - {design.assignments, needed}):
            plan.evaluations.append(
                evaluate(
                    arms, replace(design, assignments=n), goal, replicates=replicates, seed=seed + 2
                )
            )
    unique = {}
    for evaluation in plan.evaluations:  # the pilot may already be the N needed
        unique.setdefault(evaluation.assignments, evaluation)
    plan.evaluations = sorted(unique.values(), key=lambda e: e.assignments)
    per_arm = [len(arm.stimuli) for arm in arms]
    covering = [
        math.ceil(design.labels_per_image * s / design.items_per_assignment) for s in per_arm
    ]
    plan.notes.append(
        "assignments per defense that label every image of its bundle k="
        f"{design.labels_per_image} time(s): " + ", ".join(str(c) for c in covering)
    )
    people = None if plan.needed is None else plan.needed * (len(arms) if design.interleaved else 1)
    if people is not None and people < 30:
        plan.notes.append(
            f"only {people} people per defense: with fewer than 30 the annotator bootstrap's "
            "intervals come out too narrow (docs/analysis.md); plan for at least 30"
        )
    if plan.needed is not None and plan.needed > min(covering):
        plan.notes.append(
            f"{plan.needed} assignments are more than that: images then get more than "
            f"k = {design.labels_per_image} labels each (more people per image, not more images)"
        )
    return plan


def render_plan(plan: Plan, fmt: str = "markdown") -> str:
    if fmt == "json":
        import json

        return json.dumps(plan_document(plan), indent=2) + "\n"
    d, g = plan.design, plan.goal
    lines = [
        "# Study plan (simulated annotators)",
        "",
        (
            f"Design: {d.items_per_assignment} adversarial images per assignment, k = "
            f"{d.labels_per_image} label(s) per image, "
            f"{'interleaved (every person sees every defense: within-subject comparisons)' if d.interleaved else 'one defense per assignment (between-subject comparisons)'}; "
            f"{len(plan.arms)} defense(s). Goal: "
            + "; ".join(
                part
                for part in (
                    f"power {g.power:.0%} at alpha {g.alpha} (two-sided"
                    + (
                        f", Bonferroni over {len(plan.arms) - 1} comparisons"
                        if len(plan.arms) > 2
                        else ""
                    )
                    + ")"
                    if len(plan.arms) > 1
                    else "",
                    f"95% half-width of % change <= {100 * g.half_width:.1f} pp"
                    if g.half_width is not None
                    else "",
                )
                if part
            )
            + f". {plan.evaluations[0].replicates} simulated studies per row."
        ),
        "",
        "| Defense | stimuli | change rate (typical annotator and image, reference rho) | slope / rho | annotator SD | image SD | lapse | expected % change | % no change | % other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, expected in zip(plan.arms, plan.expected, strict=True):
        m = arm.annotators
        lines.append(
            f"| {arm.title} | {len(arm.stimuli)} | {m.change_rate:.3f} (rho {m.reference(arm.stimuli):.3f}) | "
            f"{m.change_slope:g} | {m.annotator_sd:g} | {m.image_sd:g} | {m.lapse_rate:g} | "
            f"{100 * expected['change']:.2f} | {100 * expected['no_change']:.2f} | {100 * expected['other']:.2f} |"
        )
    if len(plan.arms) > 1:
        lines += [
            "",
            "Expected difference in % change, first defense minus each other: "
            + ", ".join(
                f"{arm.title} {100 * -diff:+.2f} pp"
                for arm, diff in zip(plan.arms[1:], plan.differences, strict=True)
            )
            + ".",
        ]
    header = ["assignments per defense", "total assignments", "labels per defense",
              "95% half-width of % change (pp)"]  # fmt: skip
    if len(plan.arms) > 1:
        header.append("power")
    header += [f"MTurk cost (USD, {plan.costs.mturk_reward} + {plan.costs.mturk_fee:.0%})",
               f"Prolific cost ({plan.costs.prolific_reward} + {plan.costs.prolific_fee:.1%})"]  # fmt: skip
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for e in plan.evaluations:
        total = e.assignments * len(plan.arms)
        cells = [
            f"**{e.assignments}**" if e.assignments == plan.needed else str(e.assignments),
            str(total),
            str(e.assignments * d.items_per_assignment),
            " / ".join(f"{100 * h:.2f}" for h in e.half_width),
        ]
        if len(plan.arms) > 1:
            cells.append(" / ".join(f"{p:.1%}" for p in e.power))
        cells += [f"{plan.costs.mturk(total):,}", f"{plan.costs.prolific(total):,}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if plan.needed is not None:
        total = plan.needed * len(plan.arms)
        alone = "; ".join(f"{why} alone ~{n}" for why, n in sorted(plan.needed_for.items()))
        lines.append(
            f"**Needed: {plan.needed} assignments per defense** ({total} in all; {alone}, "
            "closed form from the first row, then checked by simulation): "
            f"MTurk USD {plan.costs.mturk(total):,}, Prolific {plan.costs.prolific(total):,}."
        )
    else:
        lines.append("No goal to size for (give --half-width, or two or more defenses for power).")
    lines += ["", *[f"- {note}" for note in plan.notes]]
    lines += [
        (
            "- Costs are rewards plus the platform fee only: MTurk adds another 20% on HITs with 10 "
            "or more assignments, and bonuses, retries of rejected work and VAT are not counted."
        ),
    ]
    return "\n".join(lines) + "\n"


def plan_document(plan: Plan) -> dict[str, object]:
    return {
        "design": {
            "items_per_assignment": plan.design.items_per_assignment,
            "labels_per_image": plan.design.labels_per_image,
            "interleaved": plan.design.interleaved,
        },
        "goal": {
            "power": plan.goal.power,
            "alpha": plan.goal.alpha,
            "half_width": plan.goal.half_width,
        },
        "arms": [
            {
                "name": arm.title,
                "stimuli": len(arm.stimuli),
                "annotators": {
                    "change_rate": arm.annotators.change_rate,
                    "change_slope": arm.annotators.change_slope,
                    "reference_rho": arm.annotators.reference(arm.stimuli),
                    "other_rate": arm.annotators.other_rate,
                    "annotator_sd": arm.annotators.annotator_sd,
                    "image_sd": arm.annotators.image_sd,
                    "lapse_rate": arm.annotators.lapse_rate,
                    "catch_accuracy": arm.annotators.catch_accuracy,
                },
                "expected": expected,
            }
            for arm, expected in zip(plan.arms, plan.expected, strict=True)
        ],
        "evaluations": [
            {
                "assignments_per_defense": e.assignments,
                "total_assignments": e.assignments * len(plan.arms),
                "half_width": list(e.half_width),
                "power": list(e.power),
                "images_used": list(e.images_used),
                "mturk_usd": str(plan.costs.mturk(e.assignments * len(plan.arms))),
                "prolific": str(plan.costs.prolific(e.assignments * len(plan.arms))),
                "replicates": e.replicates,
            }
            for e in plan.evaluations
        ],
        "needed_per_defense": plan.needed,
        "needed_for": plan.needed_for,
        "notes": plan.notes,
    }
