"""Simulated annotators: labels for real stimuli from people whose behaviour is stated in advance.

An annotator shown an adversarial image answers with the attack's target ("change") with a
probability that may rise with the perturbation size rho, and that differs from person to
person and from image to image (some perturbations are more convincing than others at the
same rho); otherwise with the original class ("no change") or, now and then, a third class
("other"). On a share of trials (the lapse rate) they are not looking and press a random
class. Catch trials (clean images) they get right with the stated accuracy.

For annotator a and image i with perturbation rho_i (logit scale, u_a ~ N(0, annotator_sd^2),
v_i = image_sd * z_i with z_i a fixed standard normal draw per image of the stimulus set):

    P(change | a, i)      = (1 - lapse) * expit(logit(change_rate) + change_slope * (rho_i - rho_ref)
                                                + v_i + u_a) + lapse / K
    P(no change | a, rho) = (1 - lapse) * (1 - expit(...)) * (1 - other_rate) + lapse / K
    P(other | a, rho)     = the rest

`change_rate` is thus the rate of a typical annotator (u = 0) on a typical image (v = 0) at the
reference rho (by default the median rho of the stimuli). The image effects are drawn once per
stimulus set (seeded by its ids), because Table 2 is about these images: what a study
estimates is the average over annotators and over these images,
`Annotators.expected_shares`, the known answer the tests hold the analysis to.

Two consumers: `simulate_study` writes label rows with the columns of a server export (so the
whole analysis runs on them unchanged), and `simulate_counts` gives only per-annotator counts,
vectorised over many replicate studies at once, for planning (analysis/plan.py).
"""

from __future__ import annotations

import csv
import io
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from analysis.labels import AnalysisError, LabelRow, StudyInfo, StudyLabels
from contract.bundle import BundleError, read_bundle
from contract.labels import EXPORT_COLUMNS

OUTCOMES = ("change", "no_change", "other")
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)  # for E over u ~ N(0, sd^2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class StimulusSet:
    """What simulated annotators need to know about one defense's images."""

    defense: str
    network: str
    dataset: str
    stimulus_ids: tuple[str, ...]
    original: np.ndarray
    target: np.ndarray
    rho: np.ndarray
    confidence: np.ndarray
    catch_ids: tuple[str, ...] = ()
    catch_original: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    num_classes: int = 10
    class_names: tuple[str, ...] | None = None

    @property
    def slug(self) -> str:
        return f"{self.defense}-{self.network}-sim"

    @property
    def image_z(self) -> np.ndarray:
        """A fixed standard normal per image (how convincing it is), seeded by the ids."""
        seed = zlib.crc32("\n".join(self.stimulus_ids).encode())
        return np.random.default_rng(seed).standard_normal(len(self.stimulus_ids))

    def __len__(self) -> int:
        return len(self.stimulus_ids)

    @classmethod
    def from_bundle(cls, path: str | Path) -> StimulusSet:
        """The adversarial and catch stimuli of a bundle (manifest only; images unread)."""
        try:
            bundle = read_bundle(path, verify_images=False)
        except BundleError as error:
            raise AnalysisError(f"--bundle {path}: {error}") from error
        adversarial = [r for r in bundle.adversarial if r.target is not None]
        adversarial = [r for r in adversarial if r.target != r.original_label]
        if not adversarial:
            raise AnalysisError(f"--bundle {path}: no adversarial stimuli with a target")
        return cls(
            defense=bundle.meta.defense,
            network=bundle.meta.network,
            dataset=bundle.meta.dataset,
            stimulus_ids=tuple(r.stimulus_id for r in adversarial),
            original=np.array([r.original_label for r in adversarial]),
            target=np.array([r.target for r in adversarial]),
            rho=np.array([r.rho for r in adversarial], dtype=float),
            confidence=np.array([r.confidence_original for r in adversarial], dtype=float),
            catch_ids=tuple(r.stimulus_id for r in bundle.catch),
            catch_original=np.array([r.original_label for r in bundle.catch], dtype=int),
            num_classes=bundle.meta.num_classes,
            class_names=tuple(bundle.meta.class_names),
        )

    @classmethod
    def synthetic(
        cls,
        n: int,
        *,
        defense: str = "ours",
        network: str = "fc",
        rho: tuple[float, float] = (0.1, 0.6),
        n_catch: int = 0,
        seed: int = 0,
    ) -> StimulusSet:
        """n images with rho uniform on `rho` and random original/target classes (tests)."""
        rng = np.random.default_rng(seed)
        original = rng.integers(0, 10, n)
        target = (original + rng.integers(1, 10, n)) % 10
        return cls(
            defense=defense,
            network=network,
            dataset="simulated",
            stimulus_ids=tuple(f"adv-{i:05d}" for i in range(n)),
            original=original,
            target=target,
            rho=rng.uniform(*rho, n),
            confidence=rng.uniform(0.9, 1.0, n),
            catch_ids=tuple(f"catch-{i:05d}" for i in range(n_catch)),
            catch_original=rng.integers(0, 10, n_catch),
        )


def _check_fraction(name: str, value: float, *, open_low: bool, open_high: bool) -> None:
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (math.isfinite(value) and low_ok and high_ok):
        bounds = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise AnalysisError(f"{name} must be in {bounds}, got {value}")


@dataclass(frozen=True)
class Annotators:
    """How the simulated people answer (see the module docstring for the model)."""

    change_rate: float
    change_slope: float = 0.0  # logit units per unit of rho
    reference_rho: float | None = None  # None: the median rho of the stimuli
    other_rate: float = 0.05
    annotator_sd: float = 1.0
    image_sd: float = 1.0
    lapse_rate: float = 0.02
    catch_accuracy: float = 0.97

    def __post_init__(self) -> None:
        _check_fraction("--change-rate", self.change_rate, open_low=True, open_high=True)
        _check_fraction("--other-rate", self.other_rate, open_low=False, open_high=False)
        _check_fraction("--lapse-rate", self.lapse_rate, open_low=False, open_high=False)
        _check_fraction("--catch-accuracy", self.catch_accuracy, open_low=False, open_high=False)
        for name, value in (("--annotator-sd", self.annotator_sd), ("--image-sd", self.image_sd)):
            if not (math.isfinite(value) and value >= 0):
                raise AnalysisError(f"{name} must be 0 or more, got {value}")
        if not math.isfinite(self.change_slope):
            raise AnalysisError(f"--change-slope must be a number, got {self.change_slope}")

    def reference(self, stimuli: StimulusSet) -> float:
        return float(np.median(stimuli.rho)) if self.reference_rho is None else self.reference_rho

    def _linear(self, rho: np.ndarray, reference: float) -> np.ndarray:
        return logit(self.change_rate) + self.change_slope * (np.asarray(rho) - reference)

    def _mix(self, p_change: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = 1.0 - self.lapse_rate
        change = keep * p_change + self.lapse_rate / k
        no_change = keep * (1 - p_change) * (1 - self.other_rate) + self.lapse_rate / k
        return change, no_change, 1.0 - change - no_change

    def marginal(
        self, rho: np.ndarray, reference: float, k: int = 10, image_effect: np.ndarray | float = 0.0
    ) -> dict[str, np.ndarray]:
        """Population-average P(change / no change / other) of each image (over annotators)."""
        eta = (self._linear(rho, reference) + image_effect)[..., None] + self.annotator_sd * _NODES
        probabilities = self._mix(expit(eta), k)
        return {
            name: (p * _WEIGHTS).sum(axis=-1)
            for name, p in zip(OUTCOMES, probabilities, strict=True)
        }

    def expected_shares(self, stimuli: StimulusSet) -> dict[str, float]:
        """The shares a study of these stimuli estimates: the known answer."""
        curves = self.marginal(
            stimuli.rho,
            self.reference(stimuli),
            stimuli.num_classes,
            self.image_sd * stimuli.image_z,
        )
        return {name: float(values.mean()) for name, values in curves.items()}

    def catch_correct_probability(self, k: int = 10) -> float:
        return (1 - self.lapse_rate) * self.catch_accuracy + self.lapse_rate / k


@dataclass(frozen=True)
class Design:
    """How labels are collected, per defense (arm) of the study."""

    assignments: int  # per defense: the paper had 400 (x 25 = all 10,000 test images)
    items_per_assignment: int = 25  # adversarial images in one assignment
    labels_per_image: int = 1  # k: each image labeled by k different people
    interleaved: bool = False  # each assignment mixes the defenses (same people see all)
    catch_per_assignment: int = 0

    def __post_init__(self) -> None:
        for name, value, least in (
            ("--assignments", self.assignments, 1),
            ("--items", self.items_per_assignment, 1),
            ("--k", self.labels_per_image, 1),
            ("--catch-per-assignment", self.catch_per_assignment, 0),
        ):
            if int(value) != value or value < least:
                raise AnalysisError(f"{name} must be a whole number >= {least}, got {value}")

    def layout(self, arms: int) -> list[np.ndarray]:
        """For each arm, the annotator of each of its labels (annotators 0..assignments*arms-1).

        Not interleaved: arm d's assignments are done by annotators d*N .. d*N+N-1, each
        labeling `items_per_assignment` of its images. Interleaved: every one of the N*arms
        annotators labels items from all arms, slot j of annotator a going to arm (a+j) % arms,
        so each arm still gets N * items labels and every annotator sees every defense.
        """
        n, m = self.assignments, self.items_per_assignment
        if not self.interleaved or arms == 1:
            return [d * n + np.repeat(np.arange(n), m) for d in range(arms)]
        annotators = np.repeat(np.arange(n * arms), m)
        slots = np.tile(np.arange(m), n * arms)
        arm_of = (annotators + slots) % arms
        return [annotators[arm_of == d] for d in range(arms)]

    def images_used(self, labels: int, available: int) -> int:
        return min(available, math.ceil(labels / self.labels_per_image))


@dataclass(frozen=True)
class Arm:
    """One defense of a simulated study: its stimuli and how people answer on them."""

    stimuli: StimulusSet
    annotators: Annotators
    name: str = ""

    @property
    def title(self) -> str:
        title = f"{self.stimuli.defense}/{self.stimuli.network}"
        return f"{title} ({self.name})" if self.name else title


def outcomes(
    arm: Arm, images: np.ndarray, annotator_effect: np.ndarray, uniform: np.ndarray
) -> np.ndarray:
    """0 change, 1 no change, 2 other for labels of `images` (indices into the arm's stimuli)
    by annotators with these effects (logit scale), given uniform draws in [0, 1)."""
    model, stimuli = arm.annotators, arm.stimuli
    shift = model._linear(stimuli.rho, model.reference(stimuli)) + model.image_sd * stimuli.image_z
    eta = shift[images] + annotator_effect
    change, no_change, _ = model._mix(expit(eta), stimuli.num_classes)
    return (uniform >= change).astype(np.int8) + (uniform >= change + no_change)


def _images(
    rng: np.random.Generator, replicates: int, available: int, used: int, labels: int
) -> np.ndarray:
    """(replicates, labels) image indices: `used` images chosen at random, each labeled in
    turn, so the k copies of an image are `used` labels apart (different annotators)."""
    keys = rng.random((replicates, available))
    chosen = np.argsort(keys, axis=1)[:, :used]
    return chosen[:, np.arange(labels) % used]


@dataclass(frozen=True)
class SimulatedCounts:
    """Per replicate study, per annotator and arm: labels and "change" answers."""

    change: np.ndarray  # (replicates, annotators, arms)
    no_change: np.ndarray
    labels: np.ndarray  # (annotators, arms), the same in every replicate
    images_used: tuple[int, ...]


def simulate_counts(
    arms: Sequence[Arm], design: Design, *, replicates: int, seed: int = 0
) -> SimulatedCounts:
    """Counts of many replicate studies at once (vectorised; memory ~ replicates x labels)."""
    rng = np.random.default_rng(seed)
    layout = design.layout(len(arms))
    annotators = design.assignments * len(arms)
    labels = np.zeros((annotators, len(arms)))
    for d, owners in enumerate(layout):
        labels[:, d] = np.bincount(owners, minlength=annotators)
    change = np.zeros((replicates, annotators, len(arms)))
    no_change = np.zeros_like(change)
    used = []
    largest = max(len(owners) for owners in layout)
    chunk = max(1, 4_000_000 // largest)
    for start in range(0, replicates, chunk):
        r = min(chunk, replicates - start)
        # One propensity per person, the same for every defense they see.
        effects = rng.normal(0.0, 1.0, (r, annotators))
        flat = np.arange(r)[:, None] * annotators
        for d, (arm, owners) in enumerate(zip(arms, layout, strict=True)):
            n_used = design.images_used(len(owners), len(arm.stimuli))
            if start == 0:
                used.append(n_used)
            images = _images(rng, r, len(arm.stimuli), n_used, len(owners))
            u = effects[:, owners] * arm.annotators.annotator_sd
            outcome = outcomes(arm, images, u, rng.random(images.shape))
            index = (flat + owners[None, :]).ravel()
            for counts, code in ((change, 0), (no_change, 1)):
                sums = np.bincount(
                    index, weights=(outcome == code).ravel(), minlength=r * annotators
                )
                counts[start : start + r, :, d] = sums.reshape(r, annotators)
    return SimulatedCounts(change, no_change, labels, tuple(used))


def simulate_study(arms: Sequence[Arm], design: Design, *, seed: int = 0) -> list[StudyLabels]:
    """One simulated study as label rows, one StudyLabels per arm, like a server export.

    Simulated people are lab workers ("local", verification invited: as if invited to the lab) named sim-0000...;
    in an interleaved design the same person appears in every arm's study.
    """
    rng = np.random.default_rng(seed)
    layout = design.layout(len(arms))
    annotators = design.assignments * len(arms)
    effects = rng.normal(0.0, 1.0, annotators)
    studies = []
    for arm, owners in zip(arms, layout, strict=True):
        stimuli, model = arm.stimuli, arm.annotators
        k = stimuli.num_classes
        used = design.images_used(len(owners), len(stimuli))
        images = _images(rng, 1, len(stimuli), used, len(owners))[0]
        outcome = outcomes(
            arm, images, effects[owners] * model.annotator_sd, rng.random(len(owners))
        )
        third = (stimuli.original[images] + rng.integers(1, k, len(images))) % k
        clash = third == stimuli.target[images]  # a third class must be neither of the two
        while clash.any():
            third[clash] = (third[clash] + 1) % k
            clash = (third == stimuli.target[images]) | (third == stimuli.original[images])
        given = np.where(
            outcome == 0,
            stimuli.target[images],
            np.where(outcome == 1, stimuli.original[images], third),
        )
        study = f"{arm.stimuli.slug}{'-' + arm.name if arm.name else ''}"
        rows = [
            LabelRow(
                study=study,
                assignment=int(owner),
                kind="adversarial",
                original_label=int(stimuli.original[image]),
                target=int(stimuli.target[image]),
                label=int(label),
                worker_source="local",
                worker_id=f"sim-{owner:04d}",
                allocation_status="submitted",
                verification="invited",
                stimulus_id=stimuli.stimulus_ids[image],
                rho=float(stimuli.rho[image]),
                confidence_original=float(stimuli.confidence[image]),
            )
            for owner, image, label in zip(owners, images, given, strict=True)
        ]
        if design.catch_per_assignment and len(stimuli.catch_ids):
            people = np.unique(owners)
            shown = np.arange(len(people) * design.catch_per_assignment) % len(stimuli.catch_ids)
            correct = rng.random(len(shown)) < model.catch_correct_probability(k)
            truth = stimuli.catch_original[shown]
            answer = np.where(correct, truth, (truth + rng.integers(1, k, len(shown))) % k)
            rows += [
                LabelRow(
                    study=study,
                    assignment=int(people[n // design.catch_per_assignment]),
                    kind="catch",
                    original_label=int(truth[n]),
                    target=None,
                    label=int(answer[n]),
                    worker_source="local",
                    worker_id=f"sim-{people[n // design.catch_per_assignment]:04d}",
                    allocation_status="submitted",
                    verification="invited",
                    stimulus_id=stimuli.catch_ids[shown[n]],
                )
                for n in range(len(shown))
            ]
        info = StudyInfo(
            study, stimuli.defense, stimuli.network, stimuli.dataset, stimuli.class_names
        )
        studies.append(StudyLabels(info, tuple(rows)))
    return studies


def export_csv(studies: Sequence[StudyLabels]) -> str:
    """The simulated labels as a `study-server` CSV export (the columns of contract.labels)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for study in studies:
        for row in study.rows:
            writer.writerow(
                {
                    "study": row.study,
                    "defense": study.info.defense,
                    "network": study.info.network,
                    "assignment": row.assignment,
                    "stimulus_id": row.stimulus_id,
                    "kind": row.kind,
                    "original_label": row.original_label,
                    "target": "" if row.target is None else row.target,
                    "confidence_original": ""
                    if row.confidence_original is None
                    else row.confidence_original,
                    "rho": "" if row.rho is None else row.rho,
                    "label": row.label,
                    "worker_source": row.worker_source,
                    "worker_id": row.worker_id,
                    "allocation_status": row.allocation_status,
                    "verification": row.verification,
                }
            )
    return buffer.getvalue()
