"""After the attack: store as 8 bits, repair what rounding undid, and measure.

Rounding a float image to 8 bits moves each pixel by up to 1/510, which can leave p_target
a hair below C, or even change the class, for an image the attack had just pushed past C.
(When the attack still stopped exactly at C, this hit a third of a reference FC's stimuli;
now that it stops a little past C, none of 1,000 needed it, so the repair is a guard.) Such
images are continued by the same attack from their stored 8-bit version, aiming a little
further past C (1 - C halved each round), for a few short rounds; every step is counted in
`iterations`, and whatever still misses C afterwards is recorded as not reached.
"""

from __future__ import annotations

import torch
from torch import nn

from model.attacks.high_confidence import reached_target
from model.stimuli.attack import AttackRun, AttackSettings, attack_batch
from model.stimuli.outcome import BatchOutcome, measure_batch
from model.stimuli.quantize import dequantize, quantize


def attack_and_measure(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    source_index: torch.Tensor,
    settings: AttackSettings,
    *,
    target: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
) -> BatchOutcome:
    """Attack `images` in one call (study protocol unless `target`/`confidence` are given),
    then store and measure them."""
    run = attack_batch(model, images, settings, target=target, confidence=confidence)
    return store_and_measure(model, images, labels, source_index, run, settings, goal=confidence)


def store_and_measure(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    source_index: torch.Tensor,
    run: AttackRun,
    settings: AttackSettings,
    *,
    goal: torch.Tensor | None = None,
) -> BatchOutcome:
    """Quantise `run`'s images of the clean `images`, repair rounding, measure the result.

    `goal` is the confidence the attack was asked for when it is not the study's C.
    """
    stored = dequantize(quantize(run.adversarial), images.dtype)
    iterations = run.iterations.clone()
    # Only images the attack finished (by its own test, not by running out of budget):
    # their miss is rounding or float noise at the 1e-7 level, not a hard image.
    finished = run.reached | (run.iterations < settings.max_iterations)
    for round_number in range(1, settings.repair_rounds + 1):
        pending = finished & ~_meets_goal(model, stored, run.target, run.confidence)
        if not bool(pending.any()):
            break
        chosen = torch.nonzero(pending).flatten()
        stricter = 1.0 - (1.0 - run.confidence[chosen]) / 2**round_number
        repair = attack_batch(
            model,
            stored[chosen],
            settings.for_repair(),
            source_prediction=run.source_prediction[chosen],
            target=run.target[chosen],
            confidence=stricter,
        )
        stored[chosen] = dequantize(quantize(repair.adversarial), images.dtype)
        iterations[chosen] += repair.iterations
    return measure_batch(
        model,
        images,
        stored,
        labels,
        source_index,
        target=run.target,
        iterations=iterations,
        attack_reached=run.reached,
        goal=goal,
    )


@torch.no_grad()
def _meets_goal(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor
) -> torch.Tensor:
    return reached_target(model(images), target, confidence)
