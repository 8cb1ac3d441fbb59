"""Label every stimulus of a bundle with proxy annotators, as rows of the label export.

The rows have the study server's export columns (`contract.labels.EXPORT_COLUMNS`), so
`analyze-study --proxy` reads them with the same reader as people's labels; they are marked
`worker_source = verification = "proxy"` and carry the annotator's name as `worker_id`, so
they can never pass for people's labels. There is no assignment: every annotator labels
every stimulus, `assignment` is 0 and `position` the stimulus's place in the bundle.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from contract.bundle import Bundle
from contract.labels import (
    EXPORT_COLUMNS,
    PROXY_VERIFICATION,
    PROXY_WORKER_SOURCE,
    proxy_study_slug,
)
from model.stimuli.quantize import pixels_from_png_arrays


class Annotator(Protocol):
    """Anything that labels images: a `name` (the rows' worker_id) and `predict`."""

    name: str

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class labels (N,) of images (N, 1, 28, 28) in [0, 1]."""
        ...


def bundle_images(bundle: Bundle) -> torch.Tensor:
    """The bundle's stimuli as the float batch (N, 1, 28, 28) their PNGs decode to."""
    arrays = []
    for record in bundle.records:
        with Image.open(io.BytesIO(bundle.image_bytes(record))) as image:
            arrays.append(np.asarray(image, dtype=np.uint8))
    return pixels_from_png_arrays(arrays)


def proxy_rows(
    bundle: Bundle, annotators: Sequence[Annotator], images: torch.Tensor | None = None
) -> list[dict[str, Any]]:
    """One export row per (stimulus, annotator), stimuli in bundle order."""
    images = bundle_images(bundle) if images is None else images
    labels = {a.name: a.predict(images).tolist() for a in annotators}
    meta = bundle.meta
    study = proxy_study_slug(meta.defense, meta.network, meta.seed)
    rows = []
    for position, record in enumerate(bundle.records):
        for annotator in annotators:
            row = dict.fromkeys(EXPORT_COLUMNS)
            row.update(
                study=study,
                defense=meta.defense,
                network=meta.network,
                assignment=0,
                position=position,
                stimulus_id=record.stimulus_id,
                kind=record.kind,
                source_index=record.source_index,
                original_label=record.original_label,
                target=record.target,
                prediction_original=record.prediction_original,
                prediction_adversarial=record.prediction_adversarial,
                confidence_original=record.confidence_original,
                confidence_adversarial=record.confidence_adversarial,
                label=labels[annotator.name][position],
                worker_source=PROXY_WORKER_SOURCE,
                worker_id=annotator.name,
                allocation_status="submitted",
                verification=PROXY_VERIFICATION,
            )
            rows.append(row)
    return rows
