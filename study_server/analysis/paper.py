"""The paper's Table 2 (Matyasko & Chau, NeurIPS 2018), and the names used to look it up.

Percent of adversarial images that MTurk annotators labeled with the attack's target
("change") and with the original label ("no change"); "other" is what is left. The paper
cites the baselines by reference number: [7] adversarial training (AT), [16] virtual
adversarial training (VAT), [19] L2 margin maximization (MM).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFENSES = ("reference", "at", "vat", "mm", "ours")
NETWORKS = ("fc", "lenet5")
DEFENSE_TITLES = {
    "reference": "Reference",
    "at": "AT [7]",
    "vat": "VAT [16]",
    "mm": "MM [19]",
    "ours": "Ours",
}
NETWORK_TITLES = {"fc": "FC", "lenet5": "LeNet-5"}
_NETWORK_ALIASES = {
    "fc": "fc",
    "mlp": "fc",
    "lenet": "lenet5",
    "lenet5": "lenet5",
    "lenet-5": "lenet5",
}


@dataclass(frozen=True)
class PaperRow:
    change_pct: float
    no_change_pct: float

    @property
    def other_pct(self) -> float:
        return round(100.0 - self.change_pct - self.no_change_pct, 2)


# Table 2a (fully connected) and 2b (LeNet-5), as printed.
PAPER_TABLE2: dict[tuple[str, str], PaperRow] = {
    ("fc", "reference"): PaperRow(0.57, 98.74),
    ("fc", "at"): PaperRow(19.02, 77.21),
    ("fc", "vat"): PaperRow(35.08, 59.68),
    ("fc", "mm"): PaperRow(60.47, 34.52),
    ("fc", "ours"): PaperRow(87.99, 9.86),
    ("lenet5", "reference"): PaperRow(2.54, 96.53),
    ("lenet5", "at"): PaperRow(19.1, 75.94),
    ("lenet5", "vat"): PaperRow(26.8, 67.73),
    ("lenet5", "mm"): PaperRow(81.77, 13.15),
    ("lenet5", "ours"): PaperRow(92.29, 6.51),
}


def canonical_network(name: str) -> str | None:
    """'fc' or 'lenet5' for the spellings people and bundles use; None for anything else."""
    return _NETWORK_ALIASES.get(name.strip().lower())


def paper_row(network: str, defense: str) -> PaperRow | None:
    canonical = canonical_network(network)
    return PAPER_TABLE2.get((canonical, defense.lower())) if canonical else None
