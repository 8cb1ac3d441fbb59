"""`advcritic figures`: the paper's Figure 2 and Figure 4 for one trained classifier.

    advcritic figures --checkpoint runs/ours-fc-s0/checkpoint.pt --out figures/ours-fc

Writes figure2.png (10x10: row = source class, column = target), figure4.png (clean / at
the boundary / high confidence) and figures.json with the numbers in the panel titles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contract.cli import UsageError
from model.cli.stimuli import add_stimulus_inputs, load_model_inputs

FIGURES = ("2", "4")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figures",
        help="draw the paper's Figure 2 (source x target grid) and Figure 4 "
        "(clean / boundary / high confidence)",
        description="Draw the paper's Figure 2 and Figure 4 as PNG for a trained classifier, "
        "with the same "
        "attack and 8-bit quantisation as `advcritic stimuli`.",
    )
    add_stimulus_inputs(parser)
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for figure2.png, figure4.png, figures.json"
    )
    parser.add_argument(
        "--which", default="2,4", help="comma-separated figures to draw (default 2,4)"
    )
    parser.add_argument(
        "--confidence",
        type=float,
        help="Figure 2's target confidence in (0, 1) (default: each original's own "
        "confidence, as in the study)",
    )
    parser.add_argument(
        "--count", type=int, default=100, help="Figure 4's number of random images (default 100)"
    )
    parser.add_argument(
        "--columns", type=int, default=10, help="Figure 4's images per row (default 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed choosing Figure 4's images (default 0)"
    )
    parser.set_defaults(handler=run)


def parse_which(text: str) -> list[str]:
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in FIGURES]
    if not wanted or unknown:
        raise UsageError(f"--which {text!r}: choose from {', '.join(FIGURES)} (comma-separated)")
    return wanted


def run(args: argparse.Namespace) -> int:
    from model.stimuli.figures import figure2, figure4

    which = parse_which(args.which)
    if args.confidence is not None and not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.columns < 1:
        raise UsageError(f"--columns must be >= 1, got {args.columns}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    inputs = load_model_inputs(args)
    if not 1 <= args.count <= len(inputs.source):
        raise UsageError(
            f"--count must be in 1..{len(inputs.source)} (the split's size), got {args.count}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"settings": inputs.settings, "device": inputs.device}
    results = []
    if "2" in which:
        try:
            results.append(
                figure2(
                    inputs.model,
                    inputs.source,
                    args.out / "figure2.png",
                    confidence=args.confidence,
                    class_names=inputs.class_names,
                    **common,
                )
            )
        except ValueError as error:  # a class missing from the split
            raise UsageError(str(error)) from error
    if "4" in which:
        results.append(
            figure4(
                inputs.model,
                inputs.source,
                args.out / "figure4.png",
                count=args.count,
                columns=args.columns,
                seed=args.seed,
                **common,
            )
        )
    summary = {
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": inputs.checkpoint_sha256,
        "model": inputs.checkpoint.describe(),
        "figures": {result.path.name: result.summary for result in results},
    }
    (args.out / "figures.json").write_text(json.dumps(summary, indent=2) + "\n")
    for result in results:
        numbers = ", ".join(
            f"{k}={_short(v)}"
            for k, v in result.summary.items()
            if k not in ("figure", "exemplar_indices")
        )
        print(f"wrote {result.path}: {numbers}")
    print(f"wrote {args.out / 'figures.json'}")
    return 0


def _short(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
