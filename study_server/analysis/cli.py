"""`analyze-study`: the paper's Table 2 from the labels people gave.

    analyze-study --defense ours [--net fc|lenet] [--all] [--study SLUG ...]
                  [--format markdown|csv|json] [--database-url URL | --export FILE ...]
                  [--source all|mturk|local] [--plot table2.png] [--out FILE]
    analyze-study --proxy FILE [--defense D] [--net N] [--format ...] [--out FILE]

`--proxy` reads labels from `advcritic proxy-labels` (never-attacked classifiers, not
people) and prints a PROXY Table 2, per defense and per annotator; a file that mixes proxy
rows with people's rows is refused. (The proxy section below belongs in the analysis
package's own module once it leaves study_server.)

Exit status: 0 done, 2 bad input (unknown or empty study, unreadable export, bad option).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from contract.labels import PROXY_VERIFICATION, PROXY_WORKER_SOURCE
from study_server.analysis import paper
from study_server.analysis.database import DatabaseNotReady
from study_server.analysis.labels import (
    AnalysisError,
    LabelRow,
    StudyLabels,
    read_database,
    read_export,
)
from study_server.analysis.report import FORMATS, render
from study_server.analysis.stats import Share
from study_server.analysis.table2 import SOURCES, Outcomes, choose_studies, compute_table2
from study_server.settings import Settings, get_settings


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyze-study",
        description="Table 2: how often people label adversarial images with the attack's "
        "target (change) "
        "or with the original class (no change), per defense, beside the paper's numbers.",
    )
    which = parser.add_argument_group("which studies")
    which.add_argument("--defense", help="reference, at, vat, mm or ours")
    which.add_argument("--net", help="fc or lenet (default: every network with a study)")
    which.add_argument(
        "--all", action="store_true", help="every defense with a study (one row each)"
    )
    which.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="SLUG",
        help="exactly this study (repeatable)",
    )
    source = parser.add_argument_group("where the labels come from")
    source.add_argument(
        "--database-url",
        default=settings.database_url,
        help="study database (default: DATABASE_URL or %(default)s)",
    )
    source.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="FILE",
        help="a CSV/JSON export from `study-server` instead of the database (repeatable)",
    )
    source.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar="FILE",
        help="labels from `advcritic proxy-labels` (classifiers, not people): a PROXY Table 2 "
        "per defense and annotator (repeatable)",
    )
    source.add_argument(
        "--source",
        choices=SOURCES,
        default="all",
        help="whose labels count: MTurk (confirmed by `mturk sync`), lab (local mode), "
        "or both (default)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=FORMATS, default="markdown")
    output.add_argument("--out", help="write the table to this file instead of standard output")
    output.add_argument(
        "--plot", metavar="PNG", help="also draw change / no change per defense to this PNG file"
    )
    return parser


def _load(args: argparse.Namespace) -> list[StudyLabels]:
    choose = partial(
        choose_studies, defense=args.defense, network=args.net, every=args.all, slugs=args.study
    )
    if args.export:
        studies = [study for path in args.export for study in read_export(path)]
        chosen = {info.slug for info in choose([s.info for s in studies])}
        return [study for study in studies if study.info.slug in chosen]
    return read_database(args.database_url, choose)


# --- proxy labels (`advcritic proxy-labels`) ---------------------------------------------

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


def _read_proxy(path: str) -> list[StudyLabels]:
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
    networks, defenses = (*paper.NETWORKS, network), (*paper.DEFENSES, defense)
    return networks.index(network), defenses.index(defense)


def proxy_results(args: argparse.Namespace) -> list[ProxyResult]:
    """Change / no change / other per (network, defense, annotator), in the paper's order."""
    studies = [study for path in args.proxy for study in _read_proxy(path)]
    if args.defense or args.net or args.study:
        infos = [study.info for study in studies]
        wanted = choose_studies(
            infos, defense=args.defense, network=args.net, every=not args.defense, slugs=args.study
        )
        studies = [study for study in studies if study.info in wanted]
    groups: dict[tuple[str, str, str], list[LabelRow]] = {}
    for study in studies:
        network = paper.canonical_network(study.info.network) or study.info.network
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
        o, row = result.outcomes, paper.paper_row(result.network, result.defense)
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
            f"## {paper.NETWORK_TITLES.get(network, network)}, annotator {annotator} (proxy)",
            "",
            PROXY_HEADER,
            "|---|---:|---|---:|---|---:|---:|",
        ]
        for r in block:
            cells = [
                paper.DEFENSE_TITLES.get(r["defense"], r["defense"]),
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


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = build_parser(settings or get_settings()).parse_args(argv)
    try:
        if args.all and args.defense:
            raise AnalysisError("--all and --defense exclude each other (--all is every defense)")
        if args.proxy and (args.export or args.plot):
            raise AnalysisError("--proxy is analyzed on its own: without --export or --plot")
        if args.proxy:
            text = render_proxy(proxy_results(args), args.format)
        else:
            table = compute_table2(_load(args), source=args.source, skip_empty=args.all)
            text = render(table, args.format)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        if args.plot:
            from study_server.analysis.plot import plot_table2

            print(
                f"analyze-study: plot written to {plot_table2(table, args.plot)}", file=sys.stderr
            )
    except (AnalysisError, DatabaseNotReady) as error:
        print(f"analyze-study: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
