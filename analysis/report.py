"""Table 2 as Markdown (for people), CSV (for spreadsheets) or JSON (for programs).

Every format carries the same figures: counts, percentages with 95% Wilson intervals, the
paper's numbers beside ours, the per-class breakdown, catch-trial accuracy, and what was
left out and why, so a reader can judge the figures without the database.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from analysis.stats import Share
from analysis.table2 import DefenseResult, Outcomes, Table2
from contract.names import DEFENSE_TITLES, NETWORK_TITLES

FORMATS = ("markdown", "csv", "json")
SYNTHETIC_DATASET = "synthetic"  # what study_server.synthetic writes: demo images, never a study
_SOURCE_TEXT = {
    "all": (
        "MTurk submissions confirmed by `mturk sync`, Prolific submissions confirmed by "
        "`prolific sync`, and lab (local-mode) submissions"
    ),
    "mturk": "MTurk submissions confirmed by `mturk sync` only",
    "prolific": "Prolific submissions confirmed by `prolific sync` only",
    "local": "lab (local-mode) submissions only",
}


_INTRO = (
    "Percent of adversarial images labeled with the attack's target (change), with the "
    "original class (no change), or with another class (other); 95% Wilson intervals in "
    "brackets. Paper: Matyasko & Chau (NeurIPS 2018), Table 2."
)
_MAIN_COLUMNS = (
    "Network", "Defense", "Images labeled", "% change [95% CI]", "paper", "% no change [95% CI]",
    "paper", "paper inside CI (change / no change)", "% other", "catch accuracy % [95% CI]",
    "annotators",
)  # fmt: skip
_MAIN_ALIGN = ("---", "---", "---:", "---", "---:", "---", "---:", "---", "---:", "---", "---:")
_CLASS_COLUMNS = (
    "Original class",
    "Images",
    "% change [95% CI]",
    "% no change [95% CI]",
    "% other",
)
_CLASS_ALIGN = ("---", "---:", "---", "---", "---:")


def _cells(values: tuple[object, ...] | list[object]) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def _title(result: DefenseResult) -> tuple[str, str]:
    network = NETWORK_TITLES.get(result.network, result.network)
    return network, DEFENSE_TITLES.get(result.defense, result.defense)


def _pct(share: Share) -> str:
    low, high = share.interval_percent
    return f"{share.percent:.2f} [{low:.2f}, {high:.2f}]"


def _paper_inside(share: Share, paper_value: float | None) -> str:
    if paper_value is None:
        return "-"
    return "yes" if share.contains_percent(paper_value) else "no"


def _main_row(result: DefenseResult) -> str:
    o, paper = result.outcomes, result.paper
    paper_change = paper.change_pct if paper else None
    paper_no_change = paper.no_change_pct if paper else None
    catch = result.catch_accuracy
    return _cells(
        [
            *_title(result),
            o.change.total,
            _pct(o.change),
            "-" if paper_change is None else paper_change,
            _pct(o.no_change),
            "-" if paper_no_change is None else paper_no_change,
            " / ".join(
                [_paper_inside(o.change, paper_change), _paper_inside(o.no_change, paper_no_change)]
            ),
            f"{o.other.percent:.2f}",
            f"{_pct(catch)} (n={catch.total})" if catch else "-",
            result.annotators,
        ]
    )


def _details(result: DefenseResult) -> list[str]:
    network, defense = _title(result)
    sources = ", ".join(f"{source} {n}" for source, n in result.labels_by_source.items())
    lines = [
        "",
        f"## {network} / {defense}",
        "",
        (
            f"Studies: {', '.join(result.studies)} (dataset: {', '.join(result.datasets) or '-'}); "
            f"{result.assignments} assignment(s); labels counted by source: {sources}"
        ),
        "",
        _cells(_CLASS_COLUMNS),
        _cells(_CLASS_ALIGN),
    ]
    for row in result.per_class:
        o = row.outcomes
        lines.append(
            _cells(
                [
                    row.name,
                    o.change.total,
                    _pct(o.change),
                    _pct(o.no_change),
                    f"{o.other.percent:.2f}",
                ]
            )
        )
    if result.excluded:
        left_out = "; ".join(f"{n} {reason}" for reason, n in result.excluded.items())
        lines += ["", f"Labels left out: {left_out}."]
    return lines


def render_markdown(table: Table2) -> str:
    lines = [
        "# Table 2: what people see in adversarial images",
        "",
        f"Counted: {_SOURCE_TEXT[table.source]}. {_INTRO}",
        "",
        _cells(_MAIN_COLUMNS),
        _cells(_MAIN_ALIGN),
        *(_main_row(result) for result in table.results),
    ]
    demos = [slug for r in table.results if SYNTHETIC_DATASET in r.datasets for slug in r.studies]
    if demos:
        lines += [
            "",
            (
                f"**Not a study:** {', '.join(demos)} hold synthetic demo images "
                "(`study-server demo-bundle`), not adversarial examples; "
                "these figures say nothing about a defense."
            ),
        ]
    for result in table.results:
        lines += _details(result)
    if table.skipped:
        lines += ["", "Skipped (no counted labels): " + "; ".join(table.skipped.values())]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "network",
    "defense",
    "scope",
    "original_class",
    "images",
    "change_count",
    "change_pct",
    "change_ci_low",
    "change_ci_high",
    "no_change_count",
    "no_change_pct",
    "no_change_ci_low",
    "no_change_ci_high",
    "other_count",
    "other_pct",
    "paper_change_pct",
    "paper_no_change_pct",
    "catch_correct",
    "catch_total",
    "catch_pct",
    "annotators",
    "assignments",
    "studies",
)


def _outcome_fields(o: Outcomes) -> dict[str, Any]:
    fields: dict[str, Any] = {"images": o.change.total}
    for name, share in (("change", o.change), ("no_change", o.no_change)):
        low, high = share.interval_percent
        fields |= {
            f"{name}_count": share.count,
            f"{name}_pct": round(share.percent, 4),
            f"{name}_ci_low": round(low, 4),
            f"{name}_ci_high": round(high, 4),
        }
    return fields | {"other_count": o.other.count, "other_pct": round(o.other.percent, 4)}


def render_csv(table: Table2) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in table.results:
        paper, catch = result.paper, result.catch_accuracy
        writer.writerow(
            {
                "network": result.network,
                "defense": result.defense,
                "scope": "all",
                **_outcome_fields(result.outcomes),
                "paper_change_pct": paper.change_pct if paper else "",
                "paper_no_change_pct": paper.no_change_pct if paper else "",
                "catch_correct": catch.count if catch else "",
                "catch_total": catch.total if catch else "",
                "catch_pct": round(catch.percent, 4) if catch else "",
                "annotators": result.annotators,
                "assignments": result.assignments,
                "studies": " ".join(result.studies),
            }
        )
        for row in result.per_class:
            writer.writerow(
                {
                    "network": result.network,
                    "defense": result.defense,
                    "scope": "class",
                    "original_class": row.name,
                    **_outcome_fields(row.outcomes),
                }
            )
    return buffer.getvalue()


def _outcomes_json(o: Outcomes) -> dict[str, Any]:
    return {
        "change": o.change.as_dict(),
        "no_change": o.no_change.as_dict(),
        "other": o.other.as_dict(),
    }


def render_json(table: Table2) -> str:
    results = []
    for result in table.results:
        paper = result.paper
        results.append(
            {
                "network": result.network,
                "defense": result.defense,
                "studies": list(result.studies),
                "datasets": list(result.datasets),
                **_outcomes_json(result.outcomes),
                "paper": {"change_pct": paper.change_pct, "no_change_pct": paper.no_change_pct}
                if paper
                else None,
                "per_class": [
                    {"original_class": r.name, **_outcomes_json(r.outcomes)}
                    for r in result.per_class
                ],
                "catch_accuracy": result.catch_accuracy.as_dict()
                if result.catch_accuracy
                else None,
                "annotators": result.annotators,
                "assignments": result.assignments,
                "labels_by_source": result.labels_by_source,
                "excluded": result.excluded,
            }
        )
    return (
        json.dumps({"source": table.source, "results": results, "skipped": table.skipped}, indent=2)
        + "\n"
    )


def render(table: Table2, fmt: str) -> str:
    return {"markdown": render_markdown, "csv": render_csv, "json": render_json}[fmt](table)
