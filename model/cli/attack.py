"""`advcritic attack`: run one attack on a trained classifier and report rho.

    advcritic attack --checkpoint runs/ref-fc/checkpoint.pt --attack deepfool --limit 500 --output df.pt

The attack runs on the inputs the model classifies correctly (misclassified ones count 0,
failures are reported apart, see `model.metrics`). `--output` saves the adversarial
images and per-sample records with `torch.save`. The argument helpers here are shared
with `advcritic evaluate`, so both commands accept and reject the same things.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.cli import UsageError
from model.cli.inputs import (
    add_attack_budget_arguments,
    add_checkpoint_arguments,
    check_attack_budget,
    check_positive,
    load_checkpoint_model,
    load_split,
)
from model.cli.runtime import add_device_arguments, apply_runtime

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.attacks import Attack
    from model.checkpoint import Checkpoint

ATTACK_CHOICES = ("deepfool", "cw", "hc", "fgsm")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="run one attack (deepfool, cw, hc, fgsm) on a checkpoint and report rho",
        description="Attack the correctly classified images of a dataset split with one attack and "
        "print rho = mean ||r||/||x|| (misclassified inputs count 0, failures are reported apart).",
    )
    add_attack_inputs(parser)
    parser.add_argument("--attack", required=True, help=f"one of: {', '.join(ATTACK_CHOICES)}")
    add_attack_options(parser)
    parser.add_argument(
        "--output", type=Path, help="save adversarial images and per-sample records here (.pt)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def add_attack_inputs(parser: argparse.ArgumentParser) -> None:
    """Checkpoint, data and execution arguments (shared with `advcritic evaluate`)."""
    add_checkpoint_arguments(parser, purpose="images to attack")
    parser.add_argument("--limit", type=int, help="use only the first N images of the split")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="images attacked together (default 500)"
    )
    add_device_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_attack_options(parser: argparse.ArgumentParser) -> None:
    """Hyperparameters of the attacks; defaults are the paper's evaluation settings."""
    group = parser.add_argument_group("attack settings (defaults: the paper's evaluation)")
    add_attack_budget_arguments(group)  # DeepFool and hc
    group.add_argument(
        "--cw-steps", type=int, default=1000, help="C&W Adam steps per binary-search step (1000)"
    )
    group.add_argument("--cw-binary-steps", type=int, default=9, help="C&W binary-search steps (9)")
    group.add_argument("--fgsm-epsilon", type=float, default=0.1, help="FGSM L-infinity step (0.1)")


def parse_attack_names(text: str) -> list[str]:
    """Comma-separated attack names, canonicalised; UsageError naming an unknown one."""
    from model.attacks.registry import canonical_attack_name

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"no attack named in {text!r}; choose from: {', '.join(ATTACK_CHOICES)}")
    try:
        canonical = [canonical_attack_name(name) for name in names]
    except ValueError as error:
        raise UsageError(str(error)) from error
    return list(dict.fromkeys(canonical))


def build_attacks(names: list[str], args: argparse.Namespace) -> dict[str, Attack]:
    """The named attacks with the settings from the command line; UsageError for bad values."""
    from model.attacks import build_attack

    check_attack_budget(args)
    checks = (
        ("--cw-steps", args.cw_steps, args.cw_steps >= 1),
        ("--cw-binary-steps", args.cw_binary_steps, args.cw_binary_steps >= 1),
        ("--fgsm-epsilon", args.fgsm_epsilon, args.fgsm_epsilon >= 0),
    )
    for flag, value, valid in checks:
        if not valid or (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"{flag} {value} is out of range")
    settings: dict[str, dict[str, Any]] = {
        "deepfool": {"steps": args.max_iterations, "max_step": args.step_clip},
        "hc": {"steps": args.max_iterations, "max_step": args.step_clip},
        "cw": {"steps": args.cw_steps, "binary_search_steps": args.cw_binary_steps},
        "fgsm": {"epsilon": args.fgsm_epsilon},
    }
    return {name: build_attack(name, **settings[name]) for name in names}


def load_inputs(
    args: argparse.Namespace,
) -> tuple[nn.Module, Checkpoint, torch.Tensor, torch.Tensor, torch.device]:
    """Model, checkpoint record, images, labels and device; UsageError for any bad input."""
    check_positive("--limit", args.limit)
    check_positive("--batch-size", args.batch_size)
    device = apply_runtime(args)
    model, checkpoint = load_checkpoint_model(args.checkpoint, device)
    split = load_split(args, checkpoint)
    images, labels = split.images, split.labels
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    return model, checkpoint, images, labels, device


def run(args: argparse.Namespace) -> int:
    import torch

    from model.metrics import robustness

    names = parse_attack_names(args.attack)
    if len(names) != 1:
        raise UsageError(
            f"--attack takes one attack, got {args.attack!r} (advcritic evaluate runs several)"
        )
    name = names[0]
    attack = build_attacks([name], args)[name]
    model, checkpoint, images, labels, device = load_inputs(args)
    result = robustness(
        model,
        attack,
        images,
        labels,
        name=name,
        batch_size=args.batch_size,
        device=device,
        show_progress=not args.no_progress,
    )
    summary = {
        "checkpoint": str(args.checkpoint),
        "model": checkpoint.describe(),
        **result.summary(),
    }
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "summary": summary,
                "labels": labels,
                "adversarial": result.adversarial,
                "success": result.success,
                "misclassified": result.misclassified,
                "ratios": result.ratios,
                "iterations": result.iterations,
                "targets": result.targets,
            },
            args.output,
        )
        summary["output"] = str(args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{name} on {summary['model']}: rho = {result.rho:.4f} over {result.num_samples} images "
            f"({result.num_misclassified} misclassified count 0; {result.num_failures} failures excluded, "
            f"rho with them {result.rho_with_failures:.4f})"
        )
        if args.output is not None:
            print(f"adversarial examples written to {args.output}")
    return 0
