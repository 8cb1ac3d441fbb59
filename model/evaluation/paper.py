"""The paper's Table 1 (Matyasko & Chau 2018, MNIST, means over 10 runs), for comparison.

Columns: test error in percent, then robustness rho under DeepFool, Carlini-Wagner L2 and
the paper's high-confidence attack.
"""

from __future__ import annotations

from typing import NamedTuple


class PaperRow(NamedTuple):
    error_percent: float
    deepfool: float
    cw: float
    hc: float


PAPER_TABLE1: dict[str, dict[str, PaperRow]] = {
    "fc": {
        "reference": PaperRow(1.46, 0.131, 0.124, 0.173),
        "at": PaperRow(0.90, 0.228, 0.210, 0.299),
        "vat": PaperRow(0.84, 0.244, 0.215, 0.355),
        "mm": PaperRow(0.84, 0.262, 0.230, 0.453),
        "ours": PaperRow(1.18, 0.290, 0.272, 0.575),
    },
    "lenet5": {
        "reference": PaperRow(0.64, 0.157, 0.148, 0.207),
        "at": PaperRow(0.55, 0.215, 0.191, 0.286),
        "vat": PaperRow(0.60, 0.225, 0.195, 0.330),
        "mm": PaperRow(0.54, 0.248, 0.225, 0.470),
        "ours": PaperRow(0.93, 0.288, 0.278, 0.590),
    },
}
