"""A PROXY Table 2: what never-attacked classifiers say about the stimuli, before anyone is
paid to label them (`advcritic proxy-labels` writes the labels, `analyze-study --proxy`
reads them here).

The rows have the label-export columns with `worker_source` = `verification` = "proxy" and
the annotator in `worker_id`; one table per (network, annotator), defenses in the paper's
order. A file that mixes proxy rows with people's rows is refused: a proxy is an estimate of
what annotators may say, never a result about people, and the two are never pooled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analysis.labels import AnalysisError, LabelRow, StudyLabels, read_export
from analysis.stats import Share
from analysis.table2 import Outcomes, choose_studies
from contract.labels import PROXY_VERIFICATION, PROXY_WORKER_SOURCE
from contract.names import DEFENSE_TITLES, DEFENSES, NETWORK_TITLES, NETWORKS, canonical_network
from contract.paper import paper_table2

PROXY_TITLE = "# PROXY Table 2: labels from classifiers, NOT from people"
PROXY_INTRO = (
    "**These are not human labels.** Every adversarial image was labeled by classifiers that "
    "were never attacked (`advcritic proxy-labels`: the k nearest training digits, and an "
    "ensemble of independently trained networks): an estimate of what annotators may say, "
    "not a result about people. Change: labeled with the attack's target; no change: with "
    "the original class; images whose target is their true class are left out, as in "
    "Table 2. 95% Wilson intervals in brackets. The paper's columns are its MTurk results."
)

PROXY_HEADER = (
    "| Defense | Images | % change [95% CI] | paper (people) | % no change [95% CI] "
    "| paper (people) | % other |"
)


@dataclass(frozen=True)
class ProxyResult:
    network: str
    defense: str
    annotator: str
    outcomes: Outcomes
    studies: tuple[str, ...]


def read_proxy(path: str) -> list[StudyLabels]:
    """A proxy-label file's studies; AnalysisError if any of its rows is not a proxy label."""
    studies = read_export(path)
    rows = [row for study in studies for row in study.rows]
    human = {
        f"{row.worker_source}/{row.verification}"
        for row in rows
        if (row.worker_source, row.verification) != (PROXY_WORKER_SOURCE, PROXY_VERIFICATION)
    }
    if human:
        raise AnalysisError(
            f"{path} mixes proxy labels with other rows (worker_source/verification "
            f"{', '.join(sorted(human))}); analyze people's labels with --export and proxy "
            "labels with --proxy, never together"
        )
    return studies


def _rank(network: str, defense: str) -> tuple[int, int]:
    networks, defenses = (*NETWORKS, network), (*DEFENSES, defense)
    return networks.index(network), defenses.index(defense)


def _network(name: str) -> str:
    try:
        return canonical_network(name)
    except ValueError:
        return name


def proxy_results(
    paths: Sequence[str],
    *,
    defense: str | None = None,
    network: str | None = None,
    slugs: Sequence[str] = (),
) -> list[ProxyResult]:
    """Change / no change / other per (network, defense, annotator), in the paper's order."""
    studies = [study for path in paths for study in read_proxy(path)]
    if defense or network or slugs:
        infos = [study.info for study in studies]
        wanted = choose_studies(
            infos, defense=defense, network=network, every=not defense, slugs=slugs
        )
        studies = [study for study in studies if study.info in wanted]
    groups: dict[tuple[str, str, str], list[LabelRow]] = {}
    for study in studies:
        network = _network(study.info.network)
        for row in study.rows:
            if row.kind == "adversarial" and row.target not in (None, row.original_label):
                key = (network, study.info.defense.lower(), row.worker_id)
                groups.setdefault(key, []).append(row)
    if not groups:
        raise AnalysisError("the proxy labels hold no adversarial images to count")
    # One block per (network, annotator), defenses in the paper's order within it.
    ordered = sorted(groups, key=lambda key: (_rank(*key[:2])[0], key[2], _rank(*key[:2])))
    return [
        ProxyResult(*key, Outcomes.of(groups[key]), tuple(sorted({r.study for r in groups[key]})))
        for key in ordered
    ]


def _ci(share: Share) -> str:
    low, high = share.interval_percent
    return f"{share.percent:.2f} [{low:.2f}, {high:.2f}]"


def render_proxy(results: list[ProxyResult], fmt: str) -> str:
    records = []
    for result in results:
        o, row = result.outcomes, paper_table2(result.network, result.defense)
        records.append(
            {
                "labels": "proxy (classifiers, not people)",
                "network": result.network,
                "defense": result.defense,
                "annotator": result.annotator,
                "images": o.change.total,
                "change_pct": round(o.change.percent, 4),
                "change_ci95": _ci(o.change),
                "no_change_pct": round(o.no_change.percent, 4),
                "no_change_ci95": _ci(o.no_change),
                "other_pct": round(o.other.percent, 4),
                "paper_people_change_pct": row.change_pct if row else None,
                "paper_people_no_change_pct": row.no_change_pct if row else None,
                "studies": " ".join(result.studies),
            }
        )
    if fmt == "json":
        return json.dumps({"proxy": True, "results": records}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    lines = [PROXY_TITLE, "", PROXY_INTRO]
    blocks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        blocks.setdefault((r["network"], r["annotator"]), []).append(r)
    for (network, annotator), block in blocks.items():
        lines += [
            "",
            f"## {NETWORK_TITLES.get(network, network)}, annotator {annotator} (proxy)",
            "",
            PROXY_HEADER,
            "|---|---:|---|---:|---|---:|---:|",
        ]
        for r in block:
            cells = [
                DEFENSE_TITLES.get(r["defense"], r["defense"]),
                r["images"],
                r["change_ci95"],
                "-" if r["paper_people_change_pct"] is None else r["paper_people_change_pct"],
                r["no_change_ci95"],
                "-" if r["paper_people_no_change_pct"] is None else r["paper_people_no_change_pct"],
                f"{r['other_pct']:.2f}",
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        by_change = sorted(block, key=lambda r: r["change_pct"], reverse=True)
        lines += ["", "Ordering by % change: " + " > ".join(r["defense"] for r in by_change)]
        lines[-1] += " (paper, people: ours > mm > vat > at > reference)."
    return "\n".join(lines) + "\n"
