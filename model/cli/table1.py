"""`advcritic table1`: evaluate checkpoints of several seeds and write Table 1.

    advcritic table1 runs/table1-e20 --preset cpu --out docs/table1-e20
    advcritic table1 runs/paper --preset paper --out docs/table1-paper --device cuda

Writes OUT.md and OUT.csv (mean and std over seeds beside the paper's numbers) and prints
the Markdown. Each attack's result on each checkpoint is cached beside it, so re-running
after adding seeds or a column evaluates only what is new.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any

from contract.cli import UsageError
from model.cli.runtime import apply_runtime
from model.cli.train import add_runtime_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "table1",
        help="evaluate checkpoints of several seeds and write Table 1 (Markdown + CSV)",
        description="Test error and robustness rho under DeepFool, CW-L2 and the high-confidence "
        "attack (with the project's exact numerics, hc, and with the authors' float32 numerics "
        "and rho policy, hc-authors), mean and std over seeds, beside the paper's Table 1.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoints or folders holding runs")
    parser.add_argument(
        "--preset",
        choices=("cpu", "paper"),
        default="cpu",
        help="cpu: shorter CW on 200 test images; paper: the paper's settings",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("table1"), help="writes OUT.md and OUT.csv"
    )
    parser.add_argument(
        "--limit", type=int, help="every attack on only N test images (fixed random subset)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="ATTACK.KEY=VALUE",
        help="attack setting, repeatable (e.g. --set cw.steps=100)",
    )
    parser.add_argument("--batch-size", type=int, help="images per attack batch")
    parser.add_argument("--no-cache", action="store_true", help="re-evaluate even if cached")
    parser.add_argument("--allow-incomplete", action="store_true", help="include unfinished runs")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def _number(text: str) -> Any:
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    raise UsageError(f"--set value {text!r} is not a number, true/false or none")


def _preset(args: argparse.Namespace) -> Any:
    from model.attacks import build_attack
    from model.table1 import ATTACK_COLUMNS, EVALUATION_PRESETS

    preset = EVALUATION_PRESETS[args.preset]
    attacks = {name: dict(settings) for name, settings in preset.attacks.items()}
    for text in args.overrides:
        key, sep, value = text.partition("=")
        attack, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise UsageError(f"bad --set {text!r}; expected ATTACK.KEY=VALUE, e.g. cw.steps=100")
        if attack not in ATTACK_COLUMNS:
            raise UsageError(
                f"--set {text!r}: unknown attack {attack!r}; "
                f"choose one of: {', '.join(ATTACK_COLUMNS)}"
            )
        attacks.setdefault(attack, {})[option] = _number(value)
    for name, settings in attacks.items():
        try:
            build_attack(name, **settings)
        except (TypeError, ValueError) as error:
            raise UsageError(f"invalid settings for attack {name!r} {settings}: {error}") from error
    changes: dict[str, Any] = {"attacks": attacks}
    if args.limit is not None:
        if args.limit < 1:
            raise UsageError(f"--limit must be positive, got {args.limit}")
        changes["limits"] = dict.fromkeys(attacks, args.limit)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
        changes["batch_size"] = args.batch_size
    customised = bool(args.overrides) or args.limit is not None
    if customised:
        limits = changes.get("limits", preset.limits)
        changes["description"] = (
            f"{preset.description}; overridden: attacks={attacks}, images={limits}"
        )
    return dataclasses.replace(preset, **changes)


def _checkpoints(args: argparse.Namespace) -> list[Any]:
    from model.checkpoint import CheckpointError
    from model.table1 import describe_checkpoints, find_checkpoints

    try:
        infos = describe_checkpoints(find_checkpoints(args.paths))
    except (ValueError, CheckpointError) as error:
        raise UsageError(str(error)) from error
    datasets = sorted({info.dataset for info in infos})
    if len(datasets) > 1:
        raise UsageError(
            f"checkpoints of several datasets ({', '.join(datasets)}); one table is one dataset"
        )
    seen: dict[tuple[str, str, int], Path] = {}
    for info in infos:
        key = (info.network, info.defense, info.seed)
        if key in seen:
            raise UsageError(
                f"{info.path} and {seen[key]} are both "
                f"{info.defense}/{info.network} seed {info.seed}"
            )
        seen[key] = info.path
        if not info.complete and not args.allow_incomplete:
            raise UsageError(
                f"{info.path} is an unfinished run (epoch {info.epoch}); resume it with "
                "`advcritic train --resume` or pass --allow-incomplete"
            )
    return infos


def _command(args: argparse.Namespace) -> str:
    words = [
        "advcritic",
        "table1",
        *map(str, args.paths),
        "--preset",
        args.preset,
        "--out",
        str(args.out),
    ]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    for text in args.overrides:
        words += ["--set", text]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from model.table1 import (
        build_rows,
        csv_text,
        evaluate_checkpoint,
        markdown_document,
        test_split_loader,
    )

    device = apply_runtime(args)
    preset = _preset(args)
    infos = _checkpoints(args)
    load_test_split = test_split_loader(args.data_root)
    evaluations = []
    for index, info in enumerate(infos, start=1):
        try:
            evaluation = evaluate_checkpoint(
                info.path,
                preset,
                load_test_split=load_test_split,
                device=device,
                use_cache=not args.no_cache,
                show_progress=not args.no_progress,
            )
        except ValueError as error:  # the dataset cannot be loaded (DatasetError)
            raise UsageError(f"{info.path}: {error}") from error
        rhos = ", ".join(
            f"{name} {summary.rho:.3f}" for name, summary in evaluation.attacks.items()
        )
        print(
            f"[{index}/{len(infos)}] {info.defense}/{info.network} seed {info.seed}: "
            f"error {100 * evaluation.test_error:.2f}%, rho {rhos}"
        )
        evaluations.append(evaluation)
    rows = build_rows(evaluations)
    document = markdown_document(
        rows, preset_description=preset.description, command=_command(args)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    markdown_path, csv_path = Path(f"{args.out}.md"), Path(f"{args.out}.csv")
    markdown_path.write_text(document)
    csv_path.write_text(csv_text(rows))
    print()
    print(document)
    print(f"wrote {markdown_path} and {csv_path}")
    return 0
