"""The labels of a study as rows, for CSV or JSON export and for `analyze-study --export`.

One row per stored label, with what the analysis needs beside it: the stimulus (kind,
original label, target, the model's predictions), the assignment, the worker and the
state of the submission (allocation status, MTurk verification, the attention policy's
outcome), and the study's experiment. `defense` is the stimulus's own in an interleaved study
(study_server/interleaved.py), else the study's. Rows are ordered by assignment and position, so two
exports of the same data are identical.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.labels import EXPORT_COLUMNS
from study_server.attention import note as attention_note
from study_server.db.models import (
    Allocation,
    Assignment,
    Label,
    MTurkHit,
    ProlificStudy,
    Stimulus,
    Study,
    Worker,
)
from study_server.db.store import find_study


def study_meta(study: Study, *, markets: list[str] | None = None) -> dict[str, Any]:
    """What an export says about the study; `markets` are those it has HITs on."""
    return {
        "slug": study.slug,
        "defense": study.defense,
        "network": study.network,
        "dataset": study.dataset,
        "seed": study.seed,
        "bundle_version": study.bundle_version,
        "manifest_sha256": study.manifest_sha256,
        "checkpoint_sha256": study.checkpoint_sha256,
        "num_classes": study.num_classes,
        "class_names": study.class_names,
        "attack": study.attack,
        "items_per_assignment": study.items_per_assignment,
        "split_seed": study.split_seed,
        "labels_per_image": study.labels_per_image,
        "markets": markets or [],
        "experiment": study.experiment.slug if study.experiment else None,
    }


def study_markets(session: Session, study: Study) -> list[str]:
    """The markets the study was published on (the analysis counts theirs by default)."""
    markets = []
    if session.scalar(select(MTurkHit.id).where(MTurkHit.study_id == study.id).limit(1)):
        markets.append("mturk")
    if session.scalar(select(ProlificStudy.id).where(ProlificStudy.study_id == study.id)):
        markets.append("prolific")
    return markets


def label_rows(*, session: Session, study_slug: str) -> tuple[Study, list[dict[str, Any]]]:
    study = find_study(session, study_slug)
    experiment = study.experiment.slug if study.experiment else None
    query = (
        select(Label, Stimulus, Assignment.ordinal, Worker, Allocation)
        .join(Stimulus, Stimulus.id == Label.stimulus_id)
        .join(Assignment, Assignment.id == Label.assignment_id)
        .join(Worker, Worker.id == Label.worker_id)
        .join(Allocation, Allocation.id == Label.allocation_id)
        .where(Assignment.study_id == study.id)
        .order_by(Assignment.ordinal, Label.position)
    )
    rows = []
    for label, stimulus, ordinal, worker, allocation in session.execute(query):
        rows.append(
            {
                "study": study.slug,
                # An interleaved study's stimuli carry their own defense.
                "defense": stimulus.defense or study.defense,
                "network": study.network,
                "assignment": ordinal,
                "position": label.position,
                "stimulus_id": stimulus.stimulus_key,
                "kind": stimulus.kind.value,
                "source_index": stimulus.source_index,
                "original_label": stimulus.original_label,
                "target": stimulus.target,
                "prediction_original": stimulus.prediction_original,
                "prediction_adversarial": stimulus.prediction_adversarial,
                "confidence_original": stimulus.confidence_original,
                "confidence_adversarial": stimulus.confidence_adversarial,
                "rho": stimulus.rho,
                "label": label.label,
                "response_ms": label.response_ms,
                "worker_source": worker.source.value,
                "worker_id": worker.external_id,
                "allocation_status": allocation.status.value,
                "verification": allocation.verification.value,
                "mturk_assignment_id": allocation.mturk_assignment_id,
                "hit_id": allocation.hit_id,
                "submitted_at": allocation.submitted_at.isoformat()
                if allocation.submitted_at
                else None,
                "attention": allocation.attention.value if allocation.attention else None,
                "attention_note": attention_note(allocation.attention_detail, allocation.attention)
                or None,
                "experiment": experiment,
            }
        )
    return study, rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
