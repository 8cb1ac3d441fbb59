"""Figure 2 and Figure 4 from a trained model, and the grid layout they are drawn with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.cli import main
from model.stimuli.figures import pick_exemplars
from model.stimuli.generate import ImageSource
from model.stimuli.grids import GAP, GAP_VALUE, as_grid, tile


def test_tile_places_cell_row_col_at_its_grid_position() -> None:
    cells = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3, 1, 1).repeat(4, axis=2).repeat(5, axis=3)
    canvas = tile(cells)
    assert canvas.shape == (2 * 4 + GAP, 3 * 5 + 2 * GAP)
    for row in range(2):
        for col in range(3):
            top, left = row * (4 + GAP), col * (5 + GAP)
            assert (canvas[top : top + 4, left : left + 5] == row * 3 + col).all()
    assert (canvas[4 : 4 + GAP] == GAP_VALUE).all()


def test_as_grid_pads_the_last_row() -> None:
    images = np.full((7, 2, 2), 9, dtype=np.uint8)
    grid = as_grid(images, 3)
    assert grid.shape == (3, 3, 2, 2)
    assert (grid[2, 0] == 9).all() and (grid[2, 1:] == 0).all()


def test_exemplars_are_the_surest_correct_image_of_each_class(stimulus_model, mnist5k_test) -> None:
    images, labels = mnist5k_test
    chosen = pick_exemplars(
        stimulus_model, ImageSource("mnist-5k", "test", images, labels), 10, "cpu"
    )
    with torch.no_grad():
        probabilities = torch.softmax(stimulus_model(images), dim=1)
    for label, index in enumerate(chosen):
        assert labels[index] == label and probabilities[index].argmax() == label
        same = (labels == label) & (probabilities.argmax(dim=1) == label)
        assert probabilities[index, label] == probabilities[same, label].max()


def test_figures_command_draws_both_figures(stimulus_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    args = [
        "figures",
        "--checkpoint",
        str(stimulus_checkpoint),
        "--out",
        str(out),
        "--count",
        "10",
        "--columns",
        "5",
        "--max-iterations",
        "150",
        "--confidence",
        "0.9",
    ]
    assert main(args) == 0
    for name in ("figure2.png", "figure4.png"):
        with Image.open(out / name) as image:
            image.load()
            assert image.width > 400 and image.height > 200
    summary = json.loads((out / "figures.json").read_text())["figures"]
    figure2, figure4 = summary["figure2.png"], summary["figure4.png"]
    assert figure2["attacked"] == 90 and len(figure2["exemplar_indices"]) == 10
    assert figure2["reached"] >= 80, "a trained FC is fooled to 90% confidence on almost every pair"
    assert figure2["target_confidence_mean"] > 0.85
    assert figure4["count"] == 10
    # The paper's ordering of the panels' mean confidence: the boundary's is the lowest.
    assert figure4["boundary_confidence_mean"] < figure4["clean_confidence_mean"]
    assert figure4["boundary_confidence_mean"] < figure4["high_confidence_mean"]
    assert figure4["high_confidence_reached"] >= 9
