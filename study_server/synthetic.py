"""A synthetic stimulus bundle: to try the server, and for its tests and benchmark.

The images are the class digit drawn in a font plus seeded noise: they look like something
a person can label, but they are NOT adversarial examples and must never be analysed as a
study. `bundle.json` says so (`created_by`). No PyTorch needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from contract.bundle import (
    BundleMeta,
    StimulusRecord,
    encode_png,
    image_path,
    sha256_bytes,
    write_bundle,
)

SYNTHETIC_CREATOR = "study-server synthetic bundle (not a study)"


def synthetic_image(digit: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 image of `digit` with noise, roughly MNIST-like (white on black)."""
    canvas = Image.new("L", (28, 28), 0)
    font = ImageFont.load_default(size=22)
    ImageDraw.Draw(canvas).text((14, 14), str(digit), fill=255, font=font, anchor="mm")
    pixels = np.asarray(canvas, dtype=np.float64) + rng.normal(0.0, 30.0, size=(28, 28))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def synthetic_records(
    *, n_adversarial: int, n_catch: int, meta: BundleMeta, seed: int
) -> Iterator[tuple[StimulusRecord, bytes]]:
    rng = np.random.default_rng(seed)
    classes = meta.num_classes
    for index in range(n_adversarial + n_catch):
        adversarial = index < n_adversarial
        original = index % classes
        target = (
            (original + 1 + (index // classes) % (classes - 1)) % classes if adversarial else None
        )
        shown = target if target is not None else original
        png = encode_png(synthetic_image(shown % 10, rng))
        stimulus_id = f"{'adv' if adversarial else 'catch'}-{index:05d}"
        confidence = float(rng.uniform(0.9, 1.0))
        yield (
            StimulusRecord(
                stimulus_id=stimulus_id,
                kind="adversarial" if adversarial else "catch",
                image=image_path(stimulus_id),
                image_sha256=sha256_bytes(png),
                source_index=index,
                original_label=original,
                prediction_original=original,
                confidence_original=confidence,
                target=target,
                prediction_adversarial=shown,
                confidence_adversarial=confidence,
                perturbation_l2=float(rng.uniform(1.0, 3.0)) if adversarial else 0.0,
                rho=float(rng.uniform(0.1, 0.3)) if adversarial else 0.0,
                success=adversarial,
                reached_confidence=adversarial,
                iterations=int(rng.integers(1, 50)) if adversarial else 0,
                defense=meta.defense,
                network=meta.network,
                seed=meta.seed,
                checkpoint_sha256=meta.checkpoint_sha256,
            ),
            png,
        )


def write_synthetic_bundle(
    out: str | os.PathLike[str],
    *,
    n_adversarial: int = 100,
    n_catch: int = 0,
    defense: str = "ours",
    network: str = "fc",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic bundle of `n_adversarial` + `n_catch` stimuli at `out`."""
    meta = BundleMeta(
        defense=defense,
        network=network,
        dataset="synthetic",
        seed=seed,
        checkpoint_sha256=sha256_bytes(f"synthetic:{defense}:{network}:{seed}".encode()),
        attack={"name": "synthetic"},
        created_by=SYNTHETIC_CREATOR,
    )
    records = synthetic_records(n_adversarial=n_adversarial, n_catch=n_catch, meta=meta, seed=seed)
    return write_bundle(out, meta, records, overwrite=overwrite)
