"""The analysis side of a dry run (`advcritic dry-run`): simulated people who answer one image at
a time, and the comparison of what the analysis estimated with what they were told to do.

`analyze-study simulate` writes a whole study's labels at once; a dry run instead sends
simulated people through the live study server, one HIT or Prolific session each, so they
answer only the images the server shows them. Each person answers by the model of
analysis/simulate.py (the same `Annotators`, the same per-image effects of the stimulus set):
a propensity u ~ N(0, annotator_sd^2) drawn once per person, P(change) rising with rho, lapses,
a third class now and then, catch trials right with the stated accuracy.

The known answer is `Annotators.marginal` averaged over the labels actually given: the
population-average share on the images the study labeled, which is what Table 2 estimates.
`recoveries` sets it beside the measured share and its annotator-bootstrap interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.clustered import ClusteredShare
from analysis.labels import AnalysisError
from analysis.report import FEW_ANNOTATORS
from analysis.simulate import OUTCOMES, Arm, outcomes
from analysis.stats import Share
from analysis.table2 import DefenseResult, Table2
from contract.bundle import StimulusRecord


class SimulatedPerson:
    """One simulated annotator: a fixed propensity, their own random stream."""

    def __init__(self, arm: Arm, index_of: Mapping[str, int], effect: float, seed: int) -> None:
        self.arm = arm
        self.index_of = index_of
        self.effect = effect
        self.rng = np.random.default_rng(seed)

    def answer(self, record: StimulusRecord) -> int:
        """The class this person picks for the stimulus `record` describes."""
        stimuli, model = self.arm.stimuli, self.arm.annotators
        k = stimuli.num_classes
        if record.kind == "catch":
            if self.rng.random() < model.catch_correct_probability(k):
                return record.original_label
            return int((record.original_label + self.rng.integers(1, k)) % k)
        index = self.index_of.get(record.stimulus_id)
        if index is None:  # no attack target (or the true class): analysed as excluded anyway
            return record.original_label
        outcome = outcomes(
            self.arm, np.array([index]), np.array([self.effect]), self.rng.random(1)
        )[0]
        if outcome == 0:
            return int(stimuli.target[index])
        if outcome == 1:
            return int(stimuli.original[index])
        others = [c for c in range(k) if c not in (stimuli.original[index], stimuli.target[index])]
        return int(others[self.rng.integers(len(others))])


@dataclass(frozen=True)
class Crowd:
    """The simulated people of one study: person n of crowd `stream` is the same person (the
    same propensity and answers) every time the same seed is used."""

    arm: Arm
    seed: int = 0
    stream: int = 0

    def person(self, n: int) -> SimulatedPerson:
        key = zlib.crc32(f"{self.seed}:{self.stream}:{n}".encode())
        rng = np.random.default_rng(key)
        effect = float(rng.standard_normal()) * self.arm.annotators.annotator_sd
        index_of = {sid: i for i, sid in enumerate(self.arm.stimuli.stimulus_ids)}
        return SimulatedPerson(self.arm, index_of, effect, int(rng.integers(2**32)))


@dataclass(frozen=True)
class Recovery:
    """One study of a dry run: what its people were told, what the analysis found."""

    slug: str
    arm: Arm
    result: DefenseResult
    expected: dict[str, float]  # fractions, over the labels actually given
    expected_catch: float

    def measured(self, outcome: str) -> ClusteredShare | None:
        return self.result.clustered.get(outcome)

    def inside(self, outcome: str) -> bool | None:
        """Whether the expected share lies in the annotator-bootstrap interval (None: none)."""
        share = self.measured(outcome)
        if share is None:
            return None
        return share.low <= self.expected[outcome] <= share.high

    @property
    def catch(self) -> Share | None:
        return self.result.catch_accuracy

    def catch_inside(self) -> bool | None:
        if self.catch is None:
            return None
        low, high = self.catch.interval_percent
        return low <= 100 * self.expected_catch <= high


def recoveries(table: Table2, arms: Mapping[str, Arm]) -> list[Recovery]:
    """For each study of `arms` (slug -> arm) with a Table 2 row of its own: the truth beside
    the estimate. A row that pools several studies cannot be compared and is an error."""
    found = []
    for result in table.results:
        if len(result.studies) != 1 or result.studies[0] not in arms:
            raise AnalysisError(
                f"Table 2 row {result.defense}/{result.network} holds {', '.join(result.studies)}:"
                " a dry run compares one simulated study per defense and network"
            )
        slug = result.studies[0]
        arm = arms[slug]
        model, stimuli = arm.annotators, arm.stimuli
        index_of = {sid: i for i, sid in enumerate(stimuli.stimulus_ids)}
        images = np.array([index_of[row.stimulus_id] for row in result.rows])
        curves = model.marginal(
            stimuli.rho[images],
            model.reference(stimuli),
            stimuli.num_classes,
            model.image_sd * stimuli.image_z[images],
        )
        expected = {name: float(curves[name].mean()) for name in OUTCOMES}
        catch = model.catch_correct_probability(stimuli.num_classes)
        found.append(Recovery(slug, arm, result, expected, catch))
    return found


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def _measured(share: ClusteredShare | None) -> str:
    if share is None:
        return "- (1 annotator)"
    low, high = share.interval_percent
    return f"{100 * share.fraction:.1f} [{low:.1f}, {high:.1f}]"


def render_recoveries(found: Sequence[Recovery]) -> str:
    """Markdown: the parameters given, then Table 2 of the dry run beside the known answer."""
    lines = [
        "Simulated annotators, as given (analysis/simulate.py's model):",
        "",
        (
            "| Study | change rate (typical person, reference rho) | slope / rho | reference rho "
            "| annotator SD | image SD | lapse | other | catch accuracy |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in found:
        m = r.arm.annotators
        lines.append(
            f"| {r.slug} | {m.change_rate:g} | {m.change_slope:g} | "
            f"{m.reference(r.arm.stimuli):.3g} | {m.annotator_sd:g} | {m.image_sd:g} | "
            f"{m.lapse_rate:g} | {m.other_rate:g} | {m.catch_accuracy:g} |"
        )
    lines += [
        "",
        (
            "Table 2 of the dry run beside the known answer (expected: the population-average share "
            "on the images labeled; measured: % with the 95% annotator-bootstrap interval; "
            "catch: % correct with Wilson's interval):"
        ),
        "",
        (
            "| Study | labels | annotators | % change expected | measured | inside "
            "| % no change expected | measured | inside | % other expected | measured | inside "
            "| catch % expected | measured | inside |"
        ),
        "|---|---:|---:|---:|---|---|---:|---|---|---:|---|---|---:|---|---|",
    ]
    for r in found:
        cells = [r.slug, str(r.result.outcomes.change.total), str(r.result.annotators)]
        for outcome in OUTCOMES:
            cells += [
                f"{100 * r.expected[outcome]:.1f}",
                _measured(r.measured(outcome)),
                _yes(r.inside(outcome)),
            ]
        catch = r.catch
        if catch is None:
            cells += [f"{100 * r.expected_catch:.1f}", "- (no catch trials)", "-"]
        else:
            low, high = catch.interval_percent
            cells += [
                f"{100 * r.expected_catch:.1f}",
                f"{catch.percent:.1f} [{low:.1f}, {high:.1f}] (n={catch.total})",
                _yes(r.catch_inside()),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    few = [r.slug for r in found if r.result.annotators < FEW_ANNOTATORS]
    if few:
        lines += [
            "",
            (
                f"{', '.join(few)}: fewer than {FEW_ANNOTATORS} annotators, so the bootstrap "
                "intervals are too narrow (docs/analysis.md) and a 'no' is no surprise."
            ),
        ]
    sloped = [r for r in found if r.arm.annotators.change_slope]
    for r in sloped:
        fit = next((c.fit for c in r.result.curves if c.variable == "rho" and c.fit), None)
        if fit is None:
            continue
        lines += [
            "",
            (
                f"{r.slug}: slope of change on rho given {r.arm.annotators.change_slope:g} (per "
                f"person and image); fitted {fit.slope:.2f} [{fit.slope_low:.2f}, "
                f"{fit.slope_high:.2f}] (population-averaged: expected below the given slope when "
                "people or images differ, and lapses flatten it)."
            ),
        ]
    return "\n".join(lines) + "\n"
