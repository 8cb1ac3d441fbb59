"""The columns of a label export: one row per label, with the stimulus it labels, the person
and the state of their submission. The study server writes them (`/admin/.../export`), the
proxy annotators write the same columns, and `analyze-study --export` reads any such file.

`rho` (the perturbation size ||r||/||x|| of the stimulus) came later: exports written before
it lack the column, and the analysis reads them without the psychometric view. So did the
protocol's columns, at the end: `attention` (the submission's outcome against the study's
attention policy: passed, failed_attention, not_applicable, or empty when never judged),
`attention_note` (its numbers, or why it failed) and `experiment` (the experiment the study
belongs to, empty if none); the analysis reads exports without them as never judged and in
no experiment."""

from __future__ import annotations

EXPORT_COLUMNS = (
    "study",
    "defense",
    "network",
    "assignment",
    "position",
    "stimulus_id",
    "kind",
    "source_index",
    "original_label",
    "target",
    "prediction_original",
    "prediction_adversarial",
    "confidence_original",
    "confidence_adversarial",
    "rho",
    "label",
    "response_ms",
    "worker_source",
    "worker_id",
    "allocation_status",
    "verification",
    "mturk_assignment_id",
    "hit_id",
    "submitted_at",
    "attention",
    "attention_note",
    "experiment",
)

# The worker sources of people's labels (study_server.db.models.WorkerSource).
HUMAN_WORKER_SOURCES = frozenset({"mturk", "local"})
PROXY_WORKER_SOURCE = "proxy"
PROXY_VERIFICATION = "proxy"


def proxy_study_slug(defense: str, network: str, seed: int) -> str:
    """`<defense>-<network>-s<seed>-proxy`: the study name proxy rows carry."""
    return f"{defense}-{network}-s{seed}-proxy".lower()
