"""8-bit quantisation: the step between the attack's float tensors and what people see.

The study shows PNGs, so the stimulus is the 8-bit image, not the attack's float output.
Rounding moves every pixel by up to 1/510, which can push an image that was just past
the confidence threshold back below it; the generator therefore re-runs the model on
`dequantize(quantize(x))`, the exact tensor a PNG decodes to, and records that result.
"""

from __future__ import annotations

import numpy as np
import torch

LEVELS = 255


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> uint8 tensor of the same shape (round to nearest level)."""
    return (images.detach().clamp(0.0, 1.0) * LEVELS).round().to(torch.uint8)


def dequantize(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> the float image in [0, 1] a decoded PNG gives (pixel / 255)."""
    return pixels.to(dtype) / LEVELS


def to_numpy_pixels(pixels: torch.Tensor) -> np.ndarray:
    """A (N, 1, 28, 28) or (N, 28, 28) uint8 tensor as (N, 28, 28) numpy, ready for PNG encoding."""
    array = pixels.detach().cpu().numpy()
    if array.ndim == 4:
        array = array[:, 0]
    return np.ascontiguousarray(array, dtype=np.uint8)


def pixels_from_png_arrays(
    arrays: list[np.ndarray], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Decoded 28x28 uint8 arrays -> the (N, 1, 28, 28) float batch the model sees."""
    stacked = torch.from_numpy(np.stack(arrays).astype(np.uint8)).unsqueeze(1)
    return dequantize(stacked).to(device)
