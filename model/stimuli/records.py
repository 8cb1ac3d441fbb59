"""Manifest rows and PNG bytes from measured batches (the bridge to the torch-free bundle)."""

from __future__ import annotations

from collections.abc import Iterator

from contract.bundle import BundleMeta, StimulusRecord, encode_png, image_path, sha256_bytes
from model.stimuli.outcome import BatchOutcome
from model.stimuli.quantize import to_numpy_pixels

ADVERSARIAL_PREFIX = "adv"
CATCH_PREFIX = "catch"


def adversarial_id(source_index: int) -> str:
    """Adversarial stimuli are named by their source image, so ids are stable across runs."""
    return f"{ADVERSARIAL_PREFIX}-{source_index:05d}"


def catch_id(ordinal: int) -> str:
    """Catch trials are numbered; their source can be another split than the attacked one."""
    return f"{CATCH_PREFIX}-{ordinal:05d}"


def outcome_records(
    outcome: BatchOutcome, meta: BundleMeta, *, first_catch_ordinal: int = 0
) -> Iterator[tuple[StimulusRecord, bytes]]:
    """One (record, png) pair per image of `outcome`, in batch order."""
    is_catch = outcome.target is None
    pixels = to_numpy_pixels(outcome.pixels)
    columns = {
        name: getattr(outcome, name).tolist()
        for name in (
            "source_index",
            "original_label",
            "prediction_original",
            "confidence_original",
            "prediction_stored",
            "confidence_stored",
            "perturbation_l2",
            "rho",
            "success",
            "reached_confidence",
            "iterations",
        )
    }
    targets = [None] * len(outcome) if is_catch else outcome.target.tolist()
    for row in range(len(outcome)):
        source_index = columns["source_index"][row]
        stimulus_id = (
            catch_id(first_catch_ordinal + row) if is_catch else adversarial_id(source_index)
        )
        png = encode_png(pixels[row])
        record = StimulusRecord(
            stimulus_id=stimulus_id,
            kind="catch" if is_catch else "adversarial",
            image=image_path(stimulus_id),
            image_sha256=sha256_bytes(png),
            source_index=source_index,
            original_label=columns["original_label"][row],
            prediction_original=columns["prediction_original"][row],
            confidence_original=columns["confidence_original"][row],
            target=targets[row],
            prediction_adversarial=columns["prediction_stored"][row],
            confidence_adversarial=columns["confidence_stored"][row],
            perturbation_l2=columns["perturbation_l2"][row],
            rho=columns["rho"][row],
            success=columns["success"][row],
            reached_confidence=columns["reached_confidence"][row],
            iterations=columns["iterations"][row],
            defense=meta.defense,
            network=meta.network,
            seed=meta.seed,
            checkpoint_sha256=meta.checkpoint_sha256,
        )
        yield record, png
