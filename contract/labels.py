"""The label export format: one row per (stimulus, annotator), as CSV.

The study server writes it for people's labels (`study-server export`, `analyze-study
--export`) and `advcritic proxy-labels` writes it for the proxy annotators, so one reader
serves both. The columns live here, free of torch and SQLAlchemy, because neither side may
import the other.

Proxy rows are marked twice so they can never pass for people's labels: `worker_source` is
`PROXY_WORKER_SOURCE` and `verification` is `PROXY_VERIFICATION`; `worker_id` names the
annotator (e.g. `knn-k5`, `ensemble`).
"""

from __future__ import annotations

EXPORT_COLUMNS: tuple[str, ...] = (
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
    "label",
    "response_ms",
    "worker_source",
    "worker_id",
    "allocation_status",
    "verification",
    "mturk_assignment_id",
    "hit_id",
    "submitted_at",
)

# The worker sources of people's labels (study_server.db.models.WorkerSource).
HUMAN_WORKER_SOURCES = frozenset({"mturk", "local"})
PROXY_WORKER_SOURCE = "proxy"
PROXY_VERIFICATION = "proxy"


def proxy_study_slug(defense: str, network: str, seed: int) -> str:
    """`<defense>-<network>-s<seed>-proxy`: the study name proxy rows carry."""
    return f"{defense}-{network}-s{seed}-proxy".lower()
