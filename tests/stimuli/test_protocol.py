"""The rounding repair: a stored image that falls short of its goal is pushed back over it."""

from __future__ import annotations

import dataclasses

import torch

from model.stimuli.attack import AttackSettings, attack_batch
from model.stimuli.store_and_measure import store_and_measure


def test_stored_images_short_of_the_goal_are_repaired_and_counted(
    stimulus_model, mnist5k_test
) -> None:
    images, labels = mnist5k_test[0][:12], mnist5k_test[1][:12]
    settings = AttackSettings(max_iterations=150)
    loose = torch.full((12,), 0.6, dtype=torch.float64)
    run = attack_batch(stimulus_model, images, settings, confidence=loose)
    assert bool(run.reached.all())
    # As if rounding had undone the attack: the goal is stricter than what the images reach.
    strict = dataclasses.replace(run, confidence=torch.full_like(loose, 0.9))
    outcome = store_and_measure(
        stimulus_model, images, labels, torch.arange(12), strict, settings, goal=strict.confidence
    )
    assert bool(outcome.reached_confidence.all())
    assert bool((outcome.confidence_stored >= 0.9).all())
    assert bool((outcome.iterations > run.iterations).all()), "repair steps are counted"
    limit = run.iterations + settings.repair_rounds * settings.repair_iterations
    assert bool((outcome.iterations <= limit).all())


def test_images_that_ran_out_of_budget_are_not_repaired(stimulus_model, mnist5k_test) -> None:
    images, labels = mnist5k_test[0][:6], mnist5k_test[1][:6]
    settings = AttackSettings(max_iterations=1)
    run = attack_batch(stimulus_model, images, settings)
    outcome = store_and_measure(stimulus_model, images, labels, torch.arange(6), run, settings)
    assert torch.equal(outcome.iterations, run.iterations)
    assert not bool(outcome.reached_confidence.any())
