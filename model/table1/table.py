"""Table 1 from per-checkpoint evaluations: mean and std over seeds, beside the paper.

Rows are grouped by (network, defense) and ordered as in the paper. Besides the table,
`ordering_report` says, per attack, whether the measured robustness ranks the defenses as
the paper does (ours > mm > vat > at > reference), pair by pair, so agreement and
disagreement are stated from the numbers rather than by eye. `ratio_table` puts each
defense's HC/DeepFool rho ratio, for both HC columns, beside the paper's: the ratio does not
depend on the training-set size the way the absolute rho does, so it is the fairer
comparison with the paper's full-MNIST numbers.
"""

from __future__ import annotations

import csv
import io
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contract.names import DEFENSE_TITLES, DEFENSES
from contract.paper import PAPER_TABLE1, Table1Row
from model.table1.results import ATTACK_COLUMNS, CheckpointEvaluation, rho_policy

NETWORK_TITLES = {"fc": "FC 784-1200-1200-1200-10", "lenet5": "LeNet-5"}
ATTACK_TITLES = {
    "deepfool": "DeepFool",
    "cw": "CW-L2",
    "hc": "high-confidence",
    "hc-authors": "high-confidence, authors' numerics",
}
# The paper's Table 1 column each attack is compared with (Table1Row field).
PAPER_COLUMN = {"deepfool": "deepfool", "cw": "cw", "hc": "hc", "hc-authors": "hc"}
HC_COLUMNS = ("hc", "hc-authors")


@dataclass(frozen=True)
class Statistic:
    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Statistic:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values))

    def format(self, digits: int) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class TableRow:
    network: str
    defense: str
    seeds: tuple[int, ...]
    error_percent: Statistic
    rho: dict[str, Statistic]
    # Attack failures summed over runs (excluded from that attack's rho), and images attacked.
    failures: dict[str, int]
    attacked: dict[str, int]
    paper: Table1Row | None


def build_rows(evaluations: Iterable[CheckpointEvaluation]) -> list[TableRow]:
    groups: dict[tuple[str, str], list[CheckpointEvaluation]] = {}
    for evaluation in evaluations:
        groups.setdefault((evaluation.network, evaluation.defense), []).append(evaluation)
    rows = []
    network_order = {name: i for i, name in enumerate(NETWORK_TITLES)}
    for (network, defense), runs in sorted(
        groups.items(),
        key=lambda item: (network_order.get(item[0][0], 99), DEFENSES.index(item[0][1])),
    ):
        attacks = [name for name in ATTACK_COLUMNS if all(name in run.attacks for run in runs)]
        rows.append(
            TableRow(
                network=network,
                defense=defense,
                seeds=tuple(sorted(run.seed for run in runs)),
                error_percent=Statistic.of([100 * run.test_error for run in runs]),
                rho={
                    name: Statistic.of([run.attacks[name].rho for run in runs]) for name in attacks
                },
                failures={
                    name: sum(run.attacks[name].failures for run in runs) for name in attacks
                },
                attacked={
                    name: sum(run.attacks[name].attacked for run in runs) for name in attacks
                },
                paper=PAPER_TABLE1.get(network, {}).get(defense),
            )
        )
    return rows


def _paper_value(row: TableRow, column: str) -> str:
    if row.paper is None:
        return "–"
    value = getattr(row.paper, column)
    return f"{value:.2f}" if column == "error_percent" else f"{value:.3f}"


def _paper_columns(attacks: Sequence[str]) -> list[str]:
    """The paper's rho columns the measured `attacks` compare with, each once, in order."""
    return list(dict.fromkeys(PAPER_COLUMN[a] for a in attacks))


def markdown_table(rows: Sequence[TableRow], network: str) -> str:
    """One network's table: measured mean ± std over seeds, and the paper's means."""
    chosen = [row for row in rows if row.network == network]
    attacks = [name for name in ATTACK_COLUMNS if all(name in row.rho for row in chosen)]
    paper_columns = _paper_columns(attacks)
    header = ["Defense", "Runs", "Test error %"] + [f"ρ {ATTACK_TITLES[a]}" for a in attacks]
    header += ["Paper: error %"] + [f"Paper: ρ {ATTACK_TITLES[c]}" for c in paper_columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in chosen:
        cells = [
            DEFENSE_TITLES[row.defense],
            str(row.error_percent.count),
            row.error_percent.format(2),
        ]
        cells += [row.rho[a].format(3) for a in attacks]
        cells += [_paper_value(row, "error_percent")] + [
            _paper_value(row, c) for c in paper_columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    per_run = sorted(
        {
            (a, row.attacked[a] // max(row.error_percent.count, 1))
            for row in chosen
            for a in attacks
        },
        key=lambda item: attacks.index(item[0]),
    )
    lines.append("")
    lines.append(
        "Test images attacked per run: "
        + ", ".join(f"{ATTACK_TITLES[a]} {n}" for a, n in per_run)
        + "."
    )
    for policy, note in (
        ("project", "Attack failures (excluded from that attack's ρ, summed over runs): "),
        (
            "authors",
            (
                "Failures of the authors'-numerics attack (averaged into its ρ with the image "
                "the attack returned, as the authors did; summed over runs): "
            ),
        ),
    ):
        failures = [
            f"{DEFENSE_TITLES[row.defense]}: {row.failures[a]}/{row.attacked[a]} {ATTACK_TITLES[a]}"
            for row in chosen
            for a in attacks
            if row.failures[a] and rho_policy(a) == policy
        ]
        if failures:
            lines.append(note + "; ".join(failures) + ".")
    return "\n".join(lines)


def hc_ratio(row: TableRow, attack: str) -> float | None:
    """Mean rho under `attack` over mean rho under DeepFool (None without both)."""
    if attack not in row.rho or "deepfool" not in row.rho or row.rho["deepfool"].mean <= 0:
        return None
    return row.rho[attack].mean / row.rho["deepfool"].mean


def paper_hc_ratio(row: TableRow) -> float | None:
    return None if row.paper is None else row.paper.hc / row.paper.deepfool


def ratio_table(rows: Sequence[TableRow], network: str) -> str:
    """Per defense, HC/DeepFool rho (ratio of the means over runs) measured and in the paper."""
    chosen = [row for row in rows if row.network == network]
    attacks = [a for a in HC_COLUMNS if all(hc_ratio(row, a) is not None for row in chosen)]
    if not chosen or not attacks:
        return ""
    header = ["Defense"] + [f"ρ {ATTACK_TITLES[a]} / ρ DeepFool" for a in attacks]
    header.append("Paper: ρ high-confidence / ρ DeepFool")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in chosen:
        paper = paper_hc_ratio(row)
        cells = [DEFENSE_TITLES[row.defense]]
        cells += [f"{hc_ratio(row, a):.2f}" for a in attacks]
        cells.append("–" if paper is None else f"{paper:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ordering_report(rows: Sequence[TableRow], network: str) -> list[str]:
    """Per attack: the measured ranking and which of the paper's pairwise orderings hold."""
    chosen = {row.defense: row for row in rows if row.network == network}
    paper_rank = [name for name in reversed(DEFENSES) if name in chosen]
    if len(paper_rank) < 2:
        return []
    lines = []
    attacks = [name for name in ATTACK_COLUMNS if all(name in row.rho for row in chosen.values())]
    for attack in attacks:
        measured = sorted(paper_rank, key=lambda name: chosen[name].rho[attack].mean, reverse=True)
        pairs = list(itertools.combinations(paper_rank, 2))  # (stronger, weaker) in the paper
        agree = [
            (a, b) for a, b in pairs if chosen[a].rho[attack].mean > chosen[b].rho[attack].mean
        ]
        disagree = [f"{a} ≤ {b}" for a, b in pairs if (a, b) not in agree]
        verdict = "same order as the paper" if not disagree else "differs: " + ", ".join(disagree)
        lines.append(
            f"- ρ {ATTACK_TITLES[attack]}: measured {' > '.join(measured)}; "
            f"{len(agree)}/{len(pairs)} of the paper's pairwise orderings hold ({verdict})."
        )
    return lines


def _field(attack: str) -> str:
    """An attack's name as a CSV field part (hc-authors -> hc_authors)."""
    return attack.replace("-", "_")


CSV_FIELDS = [
    "network",
    "defense",
    "runs",
    "seeds",
    "error_percent_mean",
    "error_percent_std",
    *[f"rho_{_field(a)}_{s}" for a in ATTACK_COLUMNS for s in ("mean", "std")],
    *[f"{_field(a)}_failures" for a in ATTACK_COLUMNS],
    *[f"{_field(a)}_attacked" for a in ATTACK_COLUMNS],
    *[f"ratio_{_field(a)}_deepfool" for a in HC_COLUMNS],
    "paper_error_percent",
    *[f"paper_rho_{c}" for c in _paper_columns(ATTACK_COLUMNS)],
    "paper_ratio_hc_deepfool",
]


def csv_text(rows: Sequence[TableRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record: dict[str, object] = {
            "network": row.network,
            "defense": row.defense,
            "runs": row.error_percent.count,
            "seeds": " ".join(map(str, row.seeds)),
            "error_percent_mean": f"{row.error_percent.mean:.4f}",
            "error_percent_std": f"{row.error_percent.std:.4f}",
            "paper_error_percent": "" if row.paper is None else row.paper.error_percent,
        }
        for attack in ATTACK_COLUMNS:
            statistic, name = row.rho.get(attack), _field(attack)
            record[f"rho_{name}_mean"] = "" if statistic is None else f"{statistic.mean:.5f}"
            record[f"rho_{name}_std"] = "" if statistic is None else f"{statistic.std:.5f}"
            record[f"{name}_failures"] = row.failures.get(attack, "")
            record[f"{name}_attacked"] = row.attacked.get(attack, "")
        for column in _paper_columns(ATTACK_COLUMNS):
            record[f"paper_rho_{column}"] = "" if row.paper is None else getattr(row.paper, column)
        for attack in HC_COLUMNS:
            ratio = hc_ratio(row, attack)
            record[f"ratio_{_field(attack)}_deepfool"] = "" if ratio is None else f"{ratio:.4f}"
        paper_ratio = paper_hc_ratio(row)
        record["paper_ratio_hc_deepfool"] = "" if paper_ratio is None else f"{paper_ratio:.4f}"
        writer.writerow(record)
    return buffer.getvalue()


def markdown_document(rows: Sequence[TableRow], *, preset_description: str, command: str) -> str:
    """The whole generated Table 1 page: settings, one table per network, the ordering check."""
    datasets = sorted({row.network for row in rows})
    parts = [
        "# Table 1 (generated by `advcritic table1`)",
        "",
        f"Evaluation: {preset_description}.",
        (
            "Cells are mean ± sample std over the runs (seeds); the paper's columns are its means "
            "over 10 runs on full MNIST (60,000 training images), copied from its Table 1."
        ),
        (
            "ρ = mean ‖r‖₂/‖x‖₂ over the attacked test images; inputs misclassified from the "
            "start count 0; attack failures are excluded from that attack's ρ and listed under "
            "the table."
        ),
        (
            "Two high-confidence columns: `hc` computes log p_t accurately near 1 (float64 steps, "
            "ε = 1e-20); `hc-authors` runs the attack as the authors' test.py did (float32 "
            "log-softmax and confidence C, ε = 1e-8 in ‖w‖, which stalls once 1 − p_t < ~1e-5) "
            "and computes ρ their way: every test image attacked, misclassified ones too, and "
            "failures averaged in. `hc-authors` is the like-for-like partner of the paper's HC "
            "column."
        ),
        "",
        f"Regenerate: `{command}`",
    ]
    for network in [n for n in NETWORK_TITLES if n in datasets] + [
        n for n in datasets if n not in NETWORK_TITLES
    ]:
        parts += [
            "",
            f"## {NETWORK_TITLES.get(network, network)}",
            "",
            markdown_table(rows, network),
        ]
        ratios = ratio_table(rows, network)
        if ratios:
            parts += [
                "",
                (
                    "High-confidence ρ over DeepFool ρ per defense (ratio of the means over "
                    "runs; the paper's from its Table 1 means):"
                ),
                "",
                ratios,
            ]
        report = ordering_report(rows, network)
        if report:
            parts += [
                "",
                "Ordering of the defenses by ρ (the paper: ours > mm > vat > at > reference):",
                "",
            ]
            parts += report
    return "\n".join(parts) + "\n"
