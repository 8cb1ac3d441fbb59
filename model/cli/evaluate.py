"""`advcritic evaluate`: test error and rho under several attacks (one row of Table 1).

    advcritic evaluate --checkpoint runs/ref-fc/checkpoint.pt --attacks deepfool,cw,hc --limit 1000

Prints a markdown table (or JSON with `--format json`) and, with `--output`, writes the
JSON summary to a file as well.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from contract.cli import UsageError
from model.cli.attack import (
    add_attack_inputs,
    add_attack_options,
    build_attacks,
    load_inputs,
    parse_attack_names,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="test error and rho under DeepFool, C&W-L2 and the high-confidence attack",
        description="Measure a checkpoint's test error and its robustness rho under each attack "
        "(misclassified inputs count 0; attack failures are excluded and counted).",
    )
    add_attack_inputs(parser)
    parser.add_argument(
        "--attacks", default="deepfool,cw,hc", help="comma-separated (default deepfool,cw,hc)"
    )
    add_attack_options(parser)
    parser.add_argument("--format", default="markdown", help="markdown or json (default markdown)")
    parser.add_argument("--output", type=Path, help="also write the JSON summary to this file")
    parser.set_defaults(handler=run)


def markdown_report(summary: dict[str, Any]) -> str:
    """Table 1's row for one model: test error, then rho / failures per attack."""
    lines = [
        f"{summary['model']} on {summary['samples']} {summary['dataset']} {summary['split']} images",
        "",
        f"test error: {100 * summary['test_error']:.2f}%",
        "",
        "| attack | rho | rho incl. failures | failures | misclassified | mean iterations |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["attacks"].items():
        iterations = "-" if row["mean_iterations"] is None else f"{row['mean_iterations']:.1f}"
        lines.append(
            f"| {name} | {row['rho']:.4f} | {row['rho_with_failures']:.4f} | {row['failures']} "
            f"({100 * row['failure_rate']:.1f}%) | {row['misclassified']} | {iterations} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from model.metrics import evaluate

    if args.format not in ("markdown", "json"):
        raise UsageError(f"--format {args.format!r}: use markdown or json")
    attacks = build_attacks(parse_attack_names(args.attacks), args)
    model, checkpoint, images, labels, device = load_inputs(args)
    evaluation = evaluate(
        model,
        images,
        labels,
        attacks,
        batch_size=args.batch_size,
        device=device,
        show_progress=not args.no_progress,
    )
    summary = {
        "checkpoint": str(args.checkpoint),
        "model": checkpoint.describe(),
        "dataset": args.dataset or checkpoint.dataset,
        "split": args.split,
        **evaluation.summary(),
    }
    text = json.dumps(summary, indent=2)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text if args.format == "json" else markdown_report(summary))
    return 0
