"""`analyze-study`: the paper's Table 2 from the labels people gave, and planning before paying.

    analyze-study --defense ours [--net fc|lenet] [--all] [--study SLUG ...] [--experiment E]
                  [--include-failed-attention]
                  [--format markdown|csv|json] [--database-url URL | --export FILE ...]
                  [--source auto|all|mturk|prolific|local] [--plot table2.png] [--figures DIR] [--out FILE]
                  [--seed 0] [--resamples 1999] [--bins 5]
    analyze-study plan --bundle DIR [--bundle DIR ...] --change-rate P [...] [--difference D]
                  [--assignments N] [--items 25] [--k 1] [--interleaved]
                  [--power 0.8] [--alpha 0.05] [--half-width H] [--replicates 1000]
    analyze-study simulate --bundle DIR [--bundle DIR ...] --change-rate P [...] --out labels.csv
    analyze-study --proxy FILE [--defense D] [--net N] [--format ...] [--out FILE]

`--proxy` reads labels from `advcritic proxy-labels` (never-attacked classifiers, not
people) and prints a PROXY Table 2 (analysis/proxy.py).

Exit status: 0 done, 2 bad input (unknown or empty study, unreadable export or bundle, a bad
option value; the message names it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

from analysis.clustered import RESAMPLES
from analysis.labels import AnalysisError, StudyLabels, read_database, read_export
from analysis.output import write_output
from analysis.proxy import proxy_results, render_proxy
from analysis.report import FORMATS, render
from analysis.table2 import SOURCES, choose_studies, compute_table2
from contract.cli import run_command
from study_server.db.access import DatabaseNotReady
from study_server.settings import Settings, get_settings

SUBCOMMANDS = ("plan", "simulate")


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyze-study",
        description="Table 2: how often people label adversarial images with the attack's "
        "target (change) "
        "or with the original class (no change), per defense, beside the paper's numbers.",
        epilog="Also: `analyze-study plan ...` (assignments and cost a goal needs, from "
        "simulated annotators) and `analyze-study simulate ...` (labels of simulated "
        "annotators as an export); see `analyze-study plan --help`.",
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
    which.add_argument(
        "--experiment",
        metavar="SLUG",
        help="the studies of this experiment (every defense of it, or --defense's)",
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
        default="auto",
        help="whose labels count: MTurk or Prolific (confirmed by their `sync`), lab (invited "
        "codes), or all; auto (default): a study's market labels if it was published on a "
        "market, else its lab labels",
    )
    source.add_argument(
        "--include-failed-attention",
        action="store_true",
        help="count submissions that failed the study's attention policy too (they are left "
        "out by default, and listed with their reasons either way): shows the exclusion's effect",
    )
    method = parser.add_argument_group("statistics")
    method.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstraps and permutation tests"
    )
    method.add_argument(
        "--resamples",
        type=int,
        default=RESAMPLES,
        help="annotator-bootstrap resamples (default %(default)s)",
    )
    method.add_argument(
        "--bins", type=int, default=5, help="quantile bins of rho and confidence (default 5)"
    )
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=FORMATS, default="markdown")
    output.add_argument("--out", help="write the table to this file instead of standard output")
    output.add_argument(
        "--plot", metavar="PNG", help="also draw change / no change per defense to this PNG file"
    )
    output.add_argument(
        "--figures",
        metavar="DIR",
        help="also write table2, psychometric_rho and psychometric_confidence as PNG and SVG",
    )
    return parser


def _load(args: argparse.Namespace) -> list[StudyLabels]:
    choose = partial(
        choose_studies,
        defense=args.defense,
        network=args.net,
        every=args.all,
        slugs=args.study,
        experiment=args.experiment,
    )
    if args.export:
        studies = [study for path in args.export for study in read_export(path)]
        chosen = choose([s.info for s in studies])  # per study, and per defense if interleaved
        return [study for study in studies if study.info in chosen]
    return read_database(args.database_url, choose)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = settings or get_settings()
    if argv and argv[0] in SUBCOMMANDS:
        from analysis import planning_cli

        return planning_cli.main(argv[0], argv[1:], settings)
    args = build_parser(settings).parse_args(argv)
    return run_command("analyze-study", lambda: _run(args), usage=(AnalysisError, DatabaseNotReady))


def _run(args: argparse.Namespace) -> None:
    if args.all and args.defense:
        raise AnalysisError("--all and --defense exclude each other (--all is every defense)")
    if args.proxy and (args.export or args.plot or args.figures):
        raise AnalysisError("--proxy is analyzed on its own: without --export, --plot or --figures")
    if args.proxy:
        results = proxy_results(
            args.proxy, defense=args.defense, network=args.net, slugs=args.study
        )
        write_output(render_proxy(results, args.format), args.out)
        return
    table = compute_table2(
        _load(args),
        source=args.source,
        skip_empty=args.all or (args.experiment is not None and not args.defense),
        seed=args.seed,
        resamples=args.resamples,
        bins=args.bins,
        include_failed_attention=args.include_failed_attention,
    )
    write_output(render(table, args.format), args.out)
    if args.plot:
        from analysis.plot import plot_table2

        print(f"analyze-study: plot written to {plot_table2(table, args.plot)}", file=sys.stderr)
    if args.figures:
        from analysis.plot import write_figures

        for path in write_figures(table, args.figures):
            print(f"analyze-study: figure written to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
