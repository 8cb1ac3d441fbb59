"""The proxy annotators' defaults, free of torch so `advcritic --help` stays fast.

Why these values: docs/table2-proxy.md (k from leave-one-out accuracy on the training
digits; member count and epochs from clean test accuracy against CPU time).
"""

from __future__ import annotations

DEFAULT_K = 5
# Seeds far from the training runs' 0..9, so no member shares an attacked model's seed.
DEFAULT_MEMBERS: tuple[tuple[str, int], ...] = (
    ("fc", 101),
    ("fc", 102),
    ("fc", 103),
    ("lenet5", 101),
    ("lenet5", 102),
    ("lenet5", 103),
)
DEFAULT_EPOCHS = 8
ENSEMBLE_NAME = "ensemble"
