"""The defenses and networks of the paper, by the names every part of the platform uses.

Checkpoints, bundles, study rows and tables all carry these canonical names; people may type
the aliases. The order of `DEFENSES` is the paper's table order, weakest first, which is also
the robustness ordering the paper reports (ours > mm > vat > at > reference).
"""

from __future__ import annotations

DEFENSES = ("reference", "at", "vat", "mm", "ours")
DEFENSE_TITLES = {
    "reference": "Reference",
    "at": "AT [7]",
    "vat": "VAT [16]",
    "mm": "MM [19]",
    "ours": "Ours",
}
DEFENSE_ALIASES = {
    "ref": "reference",
    "none": "reference",
    "fgsm": "at",
    "adversarial-training": "at",
    "margin": "mm",
    "critic": "ours",
    "adversary-critic": "ours",
}

NETWORKS = ("fc", "lenet5")
NETWORK_TITLES = {"fc": "FC", "lenet5": "LeNet-5"}
NETWORK_ALIASES = {"lenet": "lenet5", "lenet-5": "lenet5", "mlp": "fc"}


def canonical_defense(name: str) -> str:
    """The canonical name for `name` (aliases accepted); ValueError naming the choices."""
    key = DEFENSE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose one of: {', '.join(DEFENSES)}")
    return key


def canonical_network(name: str) -> str:
    """The canonical name for `name` (aliases accepted); ValueError naming the choices."""
    key = NETWORK_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    return key
