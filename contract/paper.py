"""The paper's numbers (Matyasko & Chau, NeurIPS 2018, MNIST), as printed.

Table 1: test error in percent and robustness rho under DeepFool, Carlini-Wagner L2 and the
paper's high-confidence attack, means over 10 runs. Table 2: percent of adversarial images
MTurk annotators labeled with the attack's target ("change") and with the original label
("no change"); "other" is what is left. The paper cites the baselines by reference number:
[7] adversarial training, [16] virtual adversarial training, [19] L2 margin maximization.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.names import canonical_defense, canonical_network


@dataclass(frozen=True)
class Table1Row:
    error_percent: float
    deepfool: float
    cw: float
    hc: float


@dataclass(frozen=True)
class Table2Row:
    change_pct: float
    no_change_pct: float

    @property
    def other_pct(self) -> float:
        return round(100.0 - self.change_pct - self.no_change_pct, 2)


PAPER_TABLE1: dict[str, dict[str, Table1Row]] = {
    "fc": {
        "reference": Table1Row(1.46, 0.131, 0.124, 0.173),
        "at": Table1Row(0.90, 0.228, 0.210, 0.299),
        "vat": Table1Row(0.84, 0.244, 0.215, 0.355),
        "mm": Table1Row(0.84, 0.262, 0.230, 0.453),
        "ours": Table1Row(1.18, 0.290, 0.272, 0.575),
    },
    "lenet5": {
        "reference": Table1Row(0.64, 0.157, 0.148, 0.207),
        "at": Table1Row(0.55, 0.215, 0.191, 0.286),
        "vat": Table1Row(0.60, 0.225, 0.195, 0.330),
        "mm": Table1Row(0.54, 0.248, 0.225, 0.470),
        "ours": Table1Row(0.93, 0.288, 0.278, 0.590),
    },
}

# Table 2a (fully connected) and 2b (LeNet-5).
PAPER_TABLE2: dict[str, dict[str, Table2Row]] = {
    "fc": {
        "reference": Table2Row(0.57, 98.74),
        "at": Table2Row(19.02, 77.21),
        "vat": Table2Row(35.08, 59.68),
        "mm": Table2Row(60.47, 34.52),
        "ours": Table2Row(87.99, 9.86),
    },
    "lenet5": {
        "reference": Table2Row(2.54, 96.53),
        "at": Table2Row(19.1, 75.94),
        "vat": Table2Row(26.8, 67.73),
        "mm": Table2Row(81.77, 13.15),
        "ours": Table2Row(92.29, 6.51),
    },
}


def paper_table2(network: str, defense: str) -> Table2Row | None:
    """The paper's Table 2 row for any spelling of the names; None where the paper has none."""
    try:
        return PAPER_TABLE2[canonical_network(network)][canonical_defense(defense)]
    except ValueError:
        return None
