"""Adversarial attacks, batched over the whole batch and device-agnostic.

Every attack is a callable object with keyword-only hyperparameters; calling it returns an
`AttackResult` (unpacks as Foolbox's ``raw, clipped, success``) with per-sample
`iterations` and, for targeted attacks, `targets` and `confidence`:

    attack = L2DeepFoolAttack(steps=500, max_step=0.1, overshoot=0.02)
    raw, clipped, success = attack(model, images, labels)

Attacks:
    FGSM                     one signed gradient step (L-infinity epsilon).
    L2DeepFoolAttack         the paper's evaluation DeepFool (step clip 0.1, projection).
    L2CarliniWagnerAttack    C&W L2, 9 binary-search steps x 1,000 Adam steps (the paper), abort
                             early decided per group of 100 inputs (the authors' batch).
    HighConfidenceAttack     the paper's A_f (Algorithm 1, eq. 7), evaluation form:
                             target = closest boundary, confidence = the model's own.
    AuthorsHighConfidenceAttack
                             the same with the authors' float32 numerics (eps 1e-8, float32
                             log-softmax and C): Table 1's `hc-authors` column.
    high_confidence_attack_unrolled(model, x, target, confidence, *, steps=5, overshoot=0.05)
                             A_f's differentiable training form (second order, straight-through stop).
    closest_boundary_targets(model, x, labels=None)
                             DeepFool's linearised nearest boundary, the targets A_f uses.
    ATTACKS / build_attack(name, **overrides)
                             the registry the CLI and the evaluation use: fgsm, deepfool, cw, hc,
                             hc-authors.
    run_attack(attack, model, x, labels, *, batch_size=1000, ...)
                             an attack over many inputs in batches, results concatenated.

Inputs must lie in [0, 1]; every tensor stays on the inputs' device (the model must be there).
"""

from model.attacks.base import Attack, AttackResult, RunOutput
from model.attacks.carlini_wagner import L2CarliniWagnerAttack
from model.attacks.deepfool import L2DeepFoolAttack
from model.attacks.fgsm import FGSM
from model.attacks.gradients import closest_boundary_targets
from model.attacks.high_confidence import (
    HighConfidenceAttack,
    high_confidence_attack_unrolled,
    straight_through_round,
    straight_through_stop,
)
from model.attacks.high_confidence_authors import AuthorsHighConfidenceAttack
from model.attacks.registry import ATTACKS, attack_names, build_attack, run_attack

__all__ = [
    "ATTACKS",
    "FGSM",
    "Attack",
    "AttackResult",
    "AuthorsHighConfidenceAttack",
    "HighConfidenceAttack",
    "L2CarliniWagnerAttack",
    "L2DeepFoolAttack",
    "RunOutput",
    "attack_names",
    "build_attack",
    "closest_boundary_targets",
    "high_confidence_attack_unrolled",
    "run_attack",
    "straight_through_round",
    "straight_through_stop",
]
