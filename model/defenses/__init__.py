"""The five defenses of the paper's Table 1, selectable by name.

    reference  plain NLL
    at         adversarial training with FGSM, eps 0.1 (eq. 2)
    vat        virtual adversarial training, eps 2.0
    mm         L2 margin maximization, lambda 0.1
    ours       the adversary critic (eqs. 4-6)

`build_defense(name, classifier, ...)` returns a `Defense`, which owns the optimisation of
the classifier; `defense_class(name)` gives its hyperparameter dataclass (`Params`) and the
paper's optimizer settings (`default_optimizer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from contract.names import canonical_defense
from model.defenses.adversarial_training import AdversarialTraining
from model.defenses.adversary_critic import AdversaryCriticDefense
from model.defenses.base import (
    AllReduce,
    Defense,
    Metrics,
    MetricsGuard,
    OptimizerSettings,
    Replicate,
)
from model.defenses.class_confidence import RunningClassConfidence
from model.defenses.margin_maximization import MarginMaximization
from model.defenses.params import build_params, parse_assignments
from model.defenses.reference import Reference
from model.defenses.virtual_adversarial import VirtualAdversarialTraining

DEFENSE_CLASSES: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (
        Reference,
        AdversarialTraining,
        VirtualAdversarialTraining,
        MarginMaximization,
        AdversaryCriticDefense,
    )
}


def defense_class(name: str) -> type[Defense]:
    return DEFENSE_CLASSES[canonical_defense(name)]


def resolve_params(name: str, network: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The defense's hyperparameters for `network`, with overrides applied and validated."""
    params = build_params(defense_class(name).Params, overrides)
    for_network = getattr(params, "for_network", None)
    return for_network(network) if callable(for_network) else params


def build_defense(
    name: str,
    classifier: nn.Module,
    params: Any,
    optimizer: OptimizerSettings,
    *,
    replicate: Replicate | None = None,
    guard: MetricsGuard | None = None,
    all_reduce: AllReduce | None = None,
) -> Defense:
    """A ready-to-train defense around `classifier` (already on its device)."""
    given = {"replicate": replicate, "guard": guard, "all_reduce": all_reduce}
    options = {key: value for key, value in given.items() if value is not None}
    return defense_class(name)(classifier, params, optimizer, **options)


__all__ = [
    "DEFENSE_CLASSES",
    "AdversarialTraining",
    "AdversaryCriticDefense",
    "Defense",
    "MarginMaximization",
    "Metrics",
    "OptimizerSettings",
    "Reference",
    "RunningClassConfidence",
    "VirtualAdversarialTraining",
    "build_defense",
    "build_params",
    "defense_class",
    "parse_assignments",
    "resolve_params",
]
