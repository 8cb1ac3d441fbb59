"""Continuous batching runs the same attack as one uninterrupted call."""

from __future__ import annotations

import torch

from model.stimuli.attack import AttackSettings, attack_batch
from model.stimuli.pool import attack_pool


def l2(adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return (adversarial - images).flatten(1).norm(dim=1)


def test_pooled_chunks_follow_the_path_of_one_call(stimulus_model, mnist5k_test) -> None:
    images = mnist5k_test[0][:24]
    settings = AttackSettings(max_iterations=200)
    whole = attack_batch(stimulus_model, images, settings)
    finished = []
    pooled = attack_pool(
        stimulus_model, images, settings, pool_size=10, chunk=3, progress=finished.append
    )
    assert sum(finished) == 24, "every image leaves the pool exactly once"
    assert torch.equal(pooled.target, whole.target)
    assert torch.equal(pooled.source_prediction, whole.source_prediction)
    assert torch.allclose(pooled.confidence, whole.confidence)
    assert bool(pooled.reached.all()) and bool(whole.reached.all())
    # The same path up to float32 noise in the stop test: the same distances, and no more
    # iterations than the single call needed.
    assert torch.allclose(l2(pooled.adversarial, images), l2(whole.adversarial, images), rtol=0.02)
    assert bool((pooled.iterations <= whole.iterations + 1).all())
    assert pooled.iterations.float().mean() >= 0.8 * whole.iterations.float().mean()


def test_the_pool_respects_the_iteration_budget(stimulus_model, mnist5k_test) -> None:
    images = mnist5k_test[0][:12]
    run = attack_pool(
        stimulus_model, images, AttackSettings(max_iterations=7), pool_size=5, chunk=3
    )
    assert int(run.iterations.max()) <= 7
    assert not bool(run.reached[run.iterations < 7].logical_not().any()), (
        "an image stopped before its budget only because it reached its goal"
    )
    assert ((run.adversarial >= 0) & (run.adversarial <= 1)).all()
