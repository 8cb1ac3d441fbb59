"""Random small deformations of digit images, for training the proxy ensemble.

An annotator proxy should judge what a digit looks like, not the pixel-exact habits of one
network; classifiers trained on slightly moved, rotated, rescaled and elastically bent
digits agree better with people on ambiguous shapes (Simard et al., ICDAR 2003), and their
errors are less correlated with those of the attacked network. One `grid_sample` call
applies an affine map and a smooth random displacement field to a whole batch.

References:
    Patrice Y. Simard, Dave Steinkraus, John C. Platt, "Best practices for convolutional
    neural networks applied to visual document analysis", ICDAR 2003.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random deformation (uniform in ±range; elastic: Gaussian field).

    Attributes:
        rotation_degrees: rotation range.
        shift_pixels: translation range along each axis.
        scale: relative scale range (0.1 = 0.9x to 1.1x).
        elastic_pixels: strength (largest typical displacement, in pixels) of the elastic field.
        elastic_sigma: smoothness of the elastic field (Gaussian std in pixels).
    """

    rotation_degrees: float = 12.0
    shift_pixels: float = 2.0
    scale: float = 0.1
    elastic_pixels: float = 1.5
    elastic_sigma: float = 4.0

    def describe(self) -> dict[str, float]:
        return asdict(self)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _smooth_field(batch: int, size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Random displacement fields (batch, 2, size, size), Gaussian-smoothed, unit max scale."""
    noise = torch.rand(batch * 2, 1, size, size, generator=generator) * 2 - 1
    kernel = _gaussian_kernel(sigma)
    pad = len(kernel) // 2
    field = F.conv2d(F.pad(noise, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    field = field.view(batch, 2, size, size)
    return field / field.flatten(1).abs().amax(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)


def augment(
    images: torch.Tensor, settings: Augmentation, generator: torch.Generator
) -> torch.Tensor:
    """`images` (N, 1, H, W) in [0, 1], each randomly deformed; the result stays in [0, 1]."""
    n, _, height, width = images.shape

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(settings.rotation_degrees))
    scale = 1 + uniform(settings.scale)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    shift_x = uniform(settings.shift_pixels) * 2 / width
    shift_y = uniform(settings.shift_pixels) * 2 / height
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if settings.elastic_pixels > 0:
        field = _smooth_field(n, height, settings.elastic_sigma, generator)
        field = field * settings.elastic_pixels * 2 / height
        grid = grid + field.permute(0, 2, 3, 1)
    warped = F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped.clamp(0.0, 1.0)
