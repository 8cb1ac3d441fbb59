"""8-bit storage is exact, and catch trials are balanced and reproducible."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from contract.bundle import encode_png
from model.stimuli.catch import select_catch_indices
from model.stimuli.quantize import dequantize, quantize, to_numpy_pixels


def test_png_decodes_to_exactly_the_tensor_the_model_was_rechecked_on() -> None:
    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 0.0, 1.0
    pixels = quantize(images)
    rechecked = dequantize(pixels)
    assert (rechecked - images).abs().max() <= 0.5 / 255 + 1e-7
    for row, array in enumerate(to_numpy_pixels(pixels)):
        with Image.open(io.BytesIO(encode_png(array))) as image:
            decoded = torch.from_numpy(np.array(image, dtype=np.uint8)).float() / 255
        assert torch.equal(decoded, rechecked[row, 0])
    assert torch.equal(quantize(rechecked), pixels), (
        "quantising a stored image again changes nothing"
    )


def test_catch_selection_is_balanced_distinct_and_seeded() -> None:
    labels = torch.arange(10).repeat_interleave(
        torch.tensor([3, 50, 50, 50, 50, 50, 50, 50, 50, 50])
    )
    chosen = select_catch_indices(labels, 35, seed=1)
    assert len(set(chosen)) == 35
    counts = torch.bincount(labels[chosen], minlength=10)
    assert counts[0] == 3 and counts[1:].max() - counts[1:].min() <= 1, (
        "a small class runs out, the rest stay even"
    )
    assert chosen == select_catch_indices(labels, 35, seed=1)
    assert chosen != select_catch_indices(labels, 35, seed=2)


def test_catch_selection_rejects_impossible_counts() -> None:
    labels = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="only 5 images"):
        select_catch_indices(labels, 6, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        select_catch_indices(labels, -1, seed=0)
