"""What one batch of stimuli turned out to be, measured on the stored 8-bit images.

`measure_batch` is the single place where the model is re-run on quantised images and the
manifest's numbers (prediction, confidence, L2, rho, success) are computed, for attacked
images and catch trials alike, so the two kinds cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.attacks.high_confidence import MAX_CONFIDENCE, log_probability_from_logits
from model.stimuli.quantize import dequantize, quantize


@dataclass(frozen=True)
class BatchOutcome:
    """Per-image results of one batch, all on the CPU; row i describes image i."""

    source_index: torch.Tensor  # int64, index into the source split
    original_label: torch.Tensor  # int64
    prediction_original: torch.Tensor  # int64
    confidence_original: torch.Tensor  # float64, p(prediction) on the clean image
    target: torch.Tensor | None  # int64 attack target, None for catch trials
    prediction_stored: torch.Tensor  # int64, prediction on the 8-bit image
    confidence_stored: torch.Tensor  # float64, p(target) (p(prediction) for catch trials)
    perturbation_l2: torch.Tensor  # float, ||stored - original||_2
    rho: torch.Tensor  # float, perturbation_l2 / ||original||_2
    success: torch.Tensor  # bool, stored image classified as target
    reached_confidence: torch.Tensor  # bool, ... with p(target) >= confidence_original
    iterations: torch.Tensor  # int64, attack iterations spent (0 for catch trials)
    pixels: torch.Tensor  # uint8 (N, 1, 28, 28), exactly the PNG contents
    # The attack's own verdict on its float output (None for catch trials); where it is
    # True but `reached_confidence` is False, 8-bit rounding undid the attack.
    attack_reached: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.source_index.numel())


@torch.no_grad()
def softmax_predictions(
    model: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities and predicted labels for a batch (for figures and selection)."""
    probabilities = torch.softmax(model(images), dim=1)
    return probabilities, probabilities.argmax(dim=1)


@torch.no_grad()
def predict_with_confidence(
    model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels and the float64 probability of `classes` (default: the prediction).

    Computed from the logits as the attack does (`log_probability_from_logits`), so a
    probability of 1 - 1e-9 is recorded as such, where float32 softmax would say 1.0.
    """
    logits = model(images)
    prediction = logits.argmax(dim=1)
    chosen = prediction if classes is None else classes
    return prediction, log_probability_from_logits(logits, chosen).double().exp()


def attack_goal(confidence: torch.Tensor) -> torch.Tensor:
    """The confidence the attack can be asked for: C, capped at 1 - 2^-24 (the attack's cap)."""
    return confidence.clamp(max=MAX_CONFIDENCE)


@torch.no_grad()
def measure_batch(
    model: nn.Module,
    originals: torch.Tensor,
    stored: torch.Tensor,
    labels: torch.Tensor,
    source_index: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    iterations: torch.Tensor | None = None,
    attack_reached: torch.Tensor | None = None,
    goal: torch.Tensor | None = None,
) -> BatchOutcome:
    """Quantise `stored` to 8 bits and describe it against its clean `originals`.

    `target=None` marks catch trials: their confidence is that of the model's prediction.
    `reached_confidence` compares p(target) with `goal`, by default the clean confidence
    measured here (the study's C), capped like the attack's (`attack_goal`); Figure 2 passes
    the confidence it asked for.
    """
    clean_prediction, confidence_original = predict_with_confidence(model, originals)
    pixels = quantize(stored)
    read_class = clean_prediction if target is None else target
    prediction, confidence_stored = predict_with_confidence(
        model, dequantize(pixels, originals.dtype), read_class
    )
    delta = (dequantize(pixels, originals.dtype) - originals).flatten(1)
    perturbation_l2 = delta.norm(dim=1)
    rho = perturbation_l2 / originals.flatten(1).norm(dim=1).clamp_min(1e-12)
    if target is None:
        success = torch.zeros_like(prediction, dtype=torch.bool)
        reached = success
        iterations = torch.zeros_like(prediction)
    else:
        success = prediction == target
        wanted = attack_goal(confidence_original if goal is None else goal)
        reached = success & (confidence_stored >= wanted)
    if iterations is None:
        raise ValueError("attacked images need their iteration counts")
    cpu = _to_cpu
    return BatchOutcome(
        source_index=cpu(source_index),
        original_label=cpu(labels),
        prediction_original=cpu(clean_prediction),
        confidence_original=cpu(confidence_original),
        target=None if target is None else cpu(target),
        prediction_stored=cpu(prediction),
        confidence_stored=cpu(confidence_stored),
        perturbation_l2=cpu(perturbation_l2),
        rho=cpu(rho),
        success=cpu(success),
        reached_confidence=cpu(reached),
        iterations=cpu(iterations),
        pixels=cpu(pixels),
        attack_reached=None if attack_reached is None else cpu(attack_reached),
    )


def _to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu")
