"""Image grids for the paper-style figures: tiling pixels and drawing them with labels.

Pixels are drawn with nearest-neighbour scaling so the figure shows exactly the 8-bit
images people label, not a smoothed version of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

GAP = 2
GAP_VALUE = 255


def tile(cells: np.ndarray, *, gap: int = GAP, gap_value: int = GAP_VALUE) -> np.ndarray:
    """(rows, cols, H, W) uint8 cells -> one (rows*(H+gap)-gap, cols*(W+gap)-gap) image."""
    if cells.ndim != 4:
        raise ValueError(f"cells must be (rows, cols, H, W), got shape {cells.shape}")
    rows, cols, height, width = cells.shape
    canvas = np.full(
        (rows * (height + gap) - gap, cols * (width + gap) - gap), gap_value, dtype=np.uint8
    )
    for row in range(rows):
        for col in range(cols):
            top, left = row * (height + gap), col * (width + gap)
            canvas[top : top + height, left : left + width] = cells[row, col]
    return canvas


def as_grid(images: np.ndarray, columns: int, *, fill: int = 0) -> np.ndarray:
    """(N, H, W) images -> (rows, columns, H, W), padding the last row with `fill`."""
    count, height, width = images.shape
    rows = max(1, -(-count // columns))
    cells = np.full((rows * columns, height, width), fill, dtype=np.uint8)
    cells[:count] = images
    return cells.reshape(rows, columns, height, width)


@dataclass(frozen=True)
class Panel:
    """One titled grid of a figure; `marked` cells (row, col) get a red frame."""

    cells: np.ndarray
    title: str
    row_labels: Sequence[str] | None = None
    column_labels: Sequence[str] | None = None
    row_axis: str | None = None
    column_axis: str | None = None
    marked: Sequence[tuple[int, int]] = ()


def save_panels(
    panels: Sequence[Panel],
    path: str | Path,
    *,
    suptitle: str | None = None,
    cell_inches: float = 0.42,
) -> Path:
    """Draw `panels` side by side into one PNG at `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = max(p.cells.shape[0] for p in panels)
    cols = sum(p.cells.shape[1] for p in panels)
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(cols * cell_inches + 1.2 * len(panels), rows * cell_inches + 1.4),
        squeeze=False,
        gridspec_kw={"width_ratios": [p.cells.shape[1] for p in panels]},
    )
    for axis, panel in zip(axes[0], panels, strict=True):
        _draw(axis, panel)
    if suptitle:
        figure.suptitle(suptitle)
    figure.tight_layout()
    figure.savefig(target, dpi=150)
    plt.close(figure)
    return target


def _draw(axis: plt.Axes, panel: Panel) -> None:
    rows, cols, height, width = panel.cells.shape
    axis.imshow(tile(panel.cells), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axis.set_title(panel.title, fontsize=9)
    step_y, step_x = height + GAP, width + GAP
    for row, col in panel.marked:
        axis.add_patch(
            Rectangle(
                (col * step_x - 0.5, row * step_y - 0.5),
                width,
                height,
                fill=False,
                edgecolor="red",
                linewidth=1.2,
            )
        )
    axis.set_xticks([c * step_x + width / 2 for c in range(cols)] if panel.column_labels else [])
    axis.set_yticks([r * step_y + height / 2 for r in range(rows)] if panel.row_labels else [])
    if panel.column_labels:
        axis.set_xticklabels(panel.column_labels, fontsize=7)
        axis.xaxis.set_ticks_position("top")
    if panel.row_labels:
        axis.set_yticklabels(panel.row_labels, fontsize=7)
    if panel.column_axis:
        axis.set_xlabel(panel.column_axis, fontsize=8)
    if panel.row_axis:
        axis.set_ylabel(panel.row_axis, fontsize=8)
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
