"""Table 2 as Markdown (for people), CSV (for spreadsheets) or JSON (for programs).

Every format carries the same figures: counts, percentages with 95% Wilson intervals and with
annotator-bootstrap intervals (which allow for one person's labels being alike), the paper's
numbers beside ours, ours against each baseline, per-image consensus and agreement when images
have several labels, the psychometric bins, the per-class breakdown, catch-trial accuracy, and
what was left out and why, so a reader can judge the figures without the database.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from analysis.clustered import ClusteredShare
from analysis.psychometric import VARIABLES
from analysis.stats import Share
from analysis.table2 import Comparison, DefenseResult, Outcomes, Table2
from contract.names import DEFENSE_TITLES, NETWORK_TITLES

FORMATS = ("markdown", "csv", "json")
SIMULATED_WORKER = "sim-"  # what analysis.simulate names its annotators
SYNTHETIC_DATASET = "synthetic"  # what study_server.synthetic writes: demo images, never a study
_SOURCE_TEXT = {
    "all": (
        "MTurk submissions confirmed by `mturk sync`, Prolific submissions confirmed by "
        "`prolific sync`, and invited lab submissions"
    ),
    "mturk": "MTurk submissions confirmed by `mturk sync` only",
    "prolific": "Prolific submissions confirmed by `prolific sync` only",
    "local": "invited lab (local-mode) submissions only",
}


def counted_text(table: Table2) -> str:
    """Whose labels the table counts, and why (with `--source auto`, per study), and whether
    submissions that failed the attention policy are in."""
    attention = (
        "; submissions that failed the attention policy INCLUDED (--include-failed-attention)"
        if table.include_failed_attention
        else "; submissions that failed the attention policy left out"
    )
    return _whose(table) + attention


def _whose(table: Table2) -> str:
    if table.source != "auto":
        return _SOURCE_TEXT[table.source]
    parts = []
    for result in table.results:
        network, defense = _title(result)
        why = {
            "mturk": "it has HITs on MTurk; lab labels only with --source all",
            "local": "it has no HITs on a market",
        }.get(result.counted_source, "its studies differ")
        parts.append(
            f"{network} / {defense}: {_SOURCE_TEXT.get(result.counted_source, 'mixed')} ({why})"
        )
    return "; ".join(parts)


_INTRO = (
    "Percent of adversarial images labeled with the attack's target (change), with the "
    "original class (no change), or with another class (other). Two 95% intervals: Wilson's "
    "treats every label as independent (as the paper's bare percentages implicitly do); the "
    "annotator bootstrap resamples people with all their labels, so it allows for one "
    "person's labels being alike, and is the one to read. Design effect: how many times "
    "larger the variance is than if labels were independent. Paper: Matyasko & Chau "
    "(NeurIPS 2018), Table 2."
)
_MAIN_COLUMNS = (
    "Network", "Defense", "Images labeled", "% change [95% Wilson]", "[95% annotator bootstrap]",
    "paper", "% no change [95% Wilson]", "[95% annotator bootstrap]", "paper",
    "paper inside bootstrap CI (change / no change)", "% other", "design effect (change)",
    "catch accuracy % [95% CI]", "annotators",
)  # fmt: skip
_MAIN_ALIGN = (
    "---", "---", "---:", "---", "---", "---:", "---", "---", "---:", "---", "---:", "---:",
    "---", "---:",
)  # fmt: skip
FEW_ANNOTATORS = 30  # below this the bootstrap's coverage falls short (docs/analysis.md)
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


def _interval(share: ClusteredShare | None) -> str:
    if share is None:
        return "- (1 annotator)"
    low, high = share.interval_percent
    return f"[{low:.2f}, {high:.2f}]"


def _paper_inside(share: ClusteredShare | Share | None, paper_value: float | None) -> str:
    if paper_value is None or share is None:
        return "-"
    return "yes" if share.contains_percent(paper_value) else "no"


def _deff(share: ClusteredShare | None) -> str:
    return "-" if share is None or share.design_effect is None else f"{share.design_effect:.2f}"


def _main_row(result: DefenseResult) -> str:
    o, paper = result.outcomes, result.paper
    paper_change = paper.change_pct if paper else None
    paper_no_change = paper.no_change_pct if paper else None
    catch = result.catch_accuracy
    change, no_change = result.clustered.get("change"), result.clustered.get("no_change")
    return _cells(
        [
            *_title(result),
            o.change.total,
            _pct(o.change),
            _interval(change),
            "-" if paper_change is None else paper_change,
            _pct(o.no_change),
            _interval(no_change),
            "-" if paper_no_change is None else paper_no_change,
            " / ".join(
                [_paper_inside(change, paper_change), _paper_inside(no_change, paper_no_change)]
            ),
            f"{o.other.percent:.2f}",
            _deff(change),
            f"{_pct(catch)} (n={catch.total})" if catch else "-",
            result.annotators,
        ]
    )


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _comparison_lines(comparisons: list[Comparison]) -> list[str]:
    if not comparisons:
        return []
    lines = [
        "",
        "## Ours against each baseline",
        "",
        (
            "Difference in percentage points (ours - baseline), 95% annotator-bootstrap "
            "interval, two-sided permutation p-value over annotators, and the p-value "
            "Holm-adjusted over the baselines of the network. Within-subject: the same people "
            "labeled both defenses (interleaved), so each person is compared with themselves; "
            "between-subject: different people, two independent samples of annotators."
        ),
        "",
        _cells(
            (
                "Network",
                "Baseline",
                "Outcome",
                "Ours - baseline (pp) [95% CI]",
                "p",
                "p (Holm)",
                "design",
                "annotators (ours / baseline / both)",
            )
        ),
        _cells(("---", "---", "---", "---", "---:", "---:", "---", "---:")),
    ]
    for c in comparisons:
        d = c.difference
        lines.append(
            _cells(
                [
                    NETWORK_TITLES.get(c.network, c.network),
                    DEFENSE_TITLES.get(c.baseline, c.baseline),
                    c.outcome.replace("_", " "),
                    f"{100 * d.estimate:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]",
                    _p(d.p_value),
                    _p(c.p_holm),
                    d.design,
                    f"{d.annotators[0]} / {d.annotators[1]} / {d.shared_annotators}",
                ]
            )
        )
    return lines


def _consensus_lines(result: DefenseResult) -> list[str]:
    c = result.consensus
    if c is None:
        return []
    sizes = ", ".join(f"{n} with {k}" for k, n in c.labels_per_image.items())
    return [
        "",
        (
            f"Per image ({c.images} images: {sizes} labels): the outcome a strict majority of an "
            "image's labels give; 95% Wilson intervals over images."
        ),
        "",
        _cells(("Scope", "% change", "% no change", "% other", "% no majority")),
        _cells(("---", "---", "---", "---", "---")),
        _cells(
            (
                "per label",
                _pct(result.outcomes.change),
                _pct(result.outcomes.no_change),
                _pct(result.outcomes.other),
                "-",
            )
        ),
        _cells(
            (
                "per image (majority)",
                _pct(c.change),
                _pct(c.no_change),
                _pct(c.other),
                _pct(c.no_majority),
            )
        ),
        "",
        c.sentence,
    ]


def _curve_lines(result: DefenseResult) -> list[str]:
    lines: list[str] = []
    for curve in result.curves:
        lines += [
            "",
            (
                f"By {VARIABLES[curve.variable][1]} (quantile bins; 95% annotator-bootstrap "
                "intervals):"
            ),
            "",
            _cells((curve.variable, "mean", "labels", "% change", "% no change", "% other")),
            _cells(("---", "---:", "---:", "---", "---", "---")),
        ]
        for b in curve.bins:
            cells = []
            for name in ("change", "no_change", "other"):
                share = b.shares[name]
                cells.append(
                    "-" if share is None else f"{100 * share.fraction:.1f} {_interval(share)}"
                )
            lines.append(_cells([f"{b.low:.3g} - {b.high:.3g}", f"{b.mean:.3g}", b.labels, *cells]))
        if curve.labels_without:
            lines += [
                "",
                f"{curve.labels_without} label(s) have no {curve.variable} (older export).",
            ]
        if curve.fit:
            ratio, low, high = curve.fit.odds_ratio_per(0.1)
            lines += [
                "",
                (
                    f"Logistic fit of change on rho (population-averaged, annotator-clustered "
                    f"errors): odds of change x{ratio:.2f} [{low:.2f}, {high:.2f}] per +0.1 of "
                    f"rho, p {'< 0.001' if curve.fit.p_value < 0.001 else f'= {curve.fit.p_value:.3f}'}."
                ),
            ]
    return lines


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
    ]
    change = result.clustered.get("change")
    if change is not None and change.annotators < FEW_ANNOTATORS:
        lines += [
            "",
            (
                f"**Few annotators ({change.annotators}):** with fewer than {FEW_ANNOTATORS} "
                "people the annotator bootstrap's intervals are too narrow (docs/analysis.md); "
                "read them as a lower bound on the uncertainty."
            ),
        ]
    lines += _consensus_lines(result)
    lines += _curve_lines(result)
    lines += [
        "",
        "Per original class (95% Wilson intervals):",
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
    lines += _attention_lines(result)
    return lines


def _attention_lines(result: DefenseResult) -> list[str]:
    failures = result.attention_failures
    if not failures:
        return []
    labels = sum(f.labels for f in failures)
    if result.failed_attention_included:
        head = (
            f"**Included on request (--include-failed-attention):** {len(failures)} "
            f"submission(s), {labels} label(s), that failed the study's attention policy:"
        )
    else:
        head = (
            f"Left out for failing the study's attention policy ({len(failures)} "
            f"submission(s), {labels} label(s); `--include-failed-attention` counts them; the "
            "catch accuracy above is of the submissions counted, after this exclusion):"
        )
    return [
        "",
        head,
        "",
        *(
            f"- {f.study}, assignment {f.assignment}, {f.annotator[0]}:{f.annotator[1]}: {f.note}"
            for f in failures
        ),
    ]


def render_markdown(table: Table2) -> str:
    lines = [
        "# Table 2: what people see in adversarial images",
        "",
        f"Counted: {counted_text(table)}. {_INTRO}",
        "",
        _cells(_MAIN_COLUMNS),
        _cells(_MAIN_ALIGN),
        *(_main_row(result) for result in table.results),
    ]
    simulated = [
        slug
        for r in table.results
        if r.rows and all(row.worker_id.startswith(SIMULATED_WORKER) for row in r.rows)
        for slug in r.studies
    ]
    if simulated:
        lines += [
            "",
            (
                f"**Simulated:** the labels of {', '.join(simulated)} come from simulated "
                "annotators (`analyze-study simulate`), not from people."
            ),
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
    lines += _comparison_lines(table.comparisons)
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
    # Annotator-bootstrap intervals (scope all, bin) and the design effect of change (all).
    "change_cluster_ci_low",
    "change_cluster_ci_high",
    "no_change_cluster_ci_low",
    "no_change_cluster_ci_high",
    "other_cluster_ci_low",
    "other_cluster_ci_high",
    "design_effect_change",
    # scope "bin": a psychometric bin of `variable` (rho, confidence).
    "variable",
    "bin_low",
    "bin_high",
    "bin_mean",
    # scope "image": per-image majority (k > 1); no_majority and Fleiss' kappa.
    "no_majority_count",
    "no_majority_pct",
    "fleiss_kappa",
    # scope "comparison": ours - `versus` in `outcome`, percentage points.
    "versus",
    "outcome",
    "difference_pct",
    "difference_ci_low",
    "difference_ci_high",
    "p_value",
    "p_holm",
    "design",
)


def _clustered_fields(shares: dict[str, ClusteredShare | None]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, share in shares.items():
        if share is not None:
            low, high = share.interval_percent
            fields |= {
                f"{name}_cluster_ci_low": round(low, 4),
                f"{name}_cluster_ci_high": round(high, 4),
            }
    change = shares.get("change")
    if change is not None and change.design_effect is not None:
        fields["design_effect_change"] = round(change.design_effect, 4)
    return fields


def _bin_fields(shares: dict[str, ClusteredShare | None]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, share in shares.items():
        if share is not None:
            fields |= {f"{name}_count": share.count, f"{name}_pct": round(100 * share.fraction, 4)}
    return fields | _clustered_fields(shares)


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
                **_clustered_fields(result.clustered),
            }
        )
        base = {"network": result.network, "defense": result.defense}
        for curve in result.curves:
            for b in curve.bins:
                writer.writerow(
                    base
                    | {
                        "scope": "bin",
                        "variable": curve.variable,
                        "bin_low": round(b.low, 6),
                        "bin_high": round(b.high, 6),
                        "bin_mean": round(b.mean, 6),
                        "images": b.labels,
                        **_bin_fields(b.shares),
                    }
                )
        if result.consensus is not None:
            c = result.consensus
            writer.writerow(
                base
                | {
                    "scope": "image",
                    **_outcome_fields(Outcomes(c.change, c.no_change, c.other)),
                    "no_majority_count": c.no_majority.count,
                    "no_majority_pct": round(c.no_majority.percent, 4),
                    "fleiss_kappa": "" if c.kappa is None else round(c.kappa, 4),
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
    for c in table.comparisons:
        d = c.difference
        writer.writerow(
            {
                "network": c.network,
                "defense": c.defense,
                "scope": "comparison",
                "versus": c.baseline,
                "outcome": c.outcome,
                "difference_pct": round(100 * d.estimate, 4),
                "difference_ci_low": round(100 * d.low, 4),
                "difference_ci_high": round(100 * d.high, 4),
                "p_value": d.p_value,
                "p_holm": c.p_holm,
                "design": d.design,
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
                "clustered": {
                    name: share.as_dict() if share else None
                    for name, share in result.clustered.items()
                },
                "per_image": result.consensus.as_dict() if result.consensus else None,
                "psychometric": [curve.as_dict() for curve in result.curves],
                "counted_source": result.counted_source,
                "attention_failures": [f.as_dict() for f in result.attention_failures],
                "failed_attention_included": result.failed_attention_included,
            }
        )
    document = {
        "source": table.source,
        "counted": counted_text(table),
        "results": results,
        "comparisons": [c.as_dict() for c in table.comparisons],
        "skipped": table.skipped,
    }
    return json.dumps(document, indent=2) + "\n"


def render(table: Table2, fmt: str) -> str:
    return {"markdown": render_markdown, "csv": render_csv, "json": render_json}[fmt](table)
