"""`analyze-study`: the paper's Table 2 from the labels people gave.

    analyze-study --defense ours [--net fc|lenet] [--all] [--study SLUG ...]
                  [--format markdown|csv|json] [--database-url URL | --export FILE ...]
                  [--source all|mturk|prolific|local] [--plot table2.png] [--out FILE]

Exit status: 0 done, 2 bad input (unknown or empty study, unreadable export, bad option).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from analysis.labels import AnalysisError, StudyLabels, read_database, read_export
from analysis.report import FORMATS, render
from analysis.table2 import SOURCES, choose_studies, compute_table2
from contract.cli import run_command
from study_server.db.access import DatabaseNotReady
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
        "--source",
        choices=SOURCES,
        default="all",
        help="whose labels count: MTurk (confirmed by `mturk sync`), Prolific (confirmed by "
        "`prolific sync`), lab (local mode), or all of them (default)",
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


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = build_parser(settings or get_settings()).parse_args(argv)
    return run_command(
        "analyze-study", lambda: _run(args), usage=(AnalysisError, DatabaseNotReady)
    )


def _run(args: argparse.Namespace) -> None:
    if args.all and args.defense:
        raise AnalysisError("--all and --defense exclude each other (--all is every defense)")
    table = compute_table2(_load(args), source=args.source, skip_empty=args.all)
    text = render(table, args.format)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.plot:
        from analysis.plot import plot_table2

        print(
            f"analyze-study: plot written to {plot_table2(table, args.plot)}", file=sys.stderr
        )


if __name__ == "__main__":
    sys.exit(main())
