"""`advcritic stimuli`: the human study's adversarial images as a verified bundle.

    advcritic stimuli --checkpoint runs/ours-fc-s0/checkpoint.pt --out stimuli/ours-fc --catch 100

Every image of the split is attacked with the paper's Table 2 protocol (target = closest
decision boundary, C = the model's confidence on the original); failures are kept and
marked. The inputs shared with `advcritic figures` (checkpoint, dataset, device) are parsed
and validated here, so both commands reject bad input with the same messages.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.cli import UsageError
from model.cli.inputs import (
    add_attack_budget_arguments,
    add_checkpoint_arguments,
    check_attack_budget,
    load_checkpoint_model,
    load_split,
)
from model.cli.runtime import add_device_arguments, apply_runtime

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.checkpoint import Checkpoint
    from model.cli.inputs import Split
    from model.stimuli.attack import AttackSettings
    from model.stimuli.generate import ImageSource


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stimuli",
        help="attack every test image (Table 2 protocol) and write a stimulus bundle",
        description="Attack every image of a split with the high-confidence attack (target = "
        "closest decision boundary, C = the model's confidence on the original), store 8-bit "
        "PNGs re-checked "
        "by the model, and write an atomic, versioned stimulus bundle for `study-server import`.",
    )
    add_stimulus_inputs(parser)
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to create")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle at --out"
    )
    parser.add_argument("--limit", type=int, help="attack only the first N images of the split")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="images the attack keeps in flight (default 1000; lower it if memory is short)",
    )
    parser.add_argument(
        "--catch", type=int, default=0, metavar="N", help="add N clean catch trials (default 0)"
    )
    parser.add_argument(
        "--catch-seed", type=int, default=0, help="seed choosing the catch trials (default 0)"
    )
    parser.add_argument(
        "--catch-split",
        default="train",
        choices=("train", "test"),
        help="split the catch trials come from (default train: never an image that is also "
        "attacked)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def add_stimulus_inputs(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with `advcritic figures`."""
    add_checkpoint_arguments(parser, purpose="split to attack")
    add_attack_budget_arguments(parser)
    add_device_arguments(parser)


@dataclass(frozen=True)
class ModelInputs:
    model: nn.Module
    checkpoint: Checkpoint
    checkpoint_sha256: str
    source: ImageSource
    class_names: list[str]
    settings: AttackSettings
    device: torch.device


def load_model_inputs(args: argparse.Namespace) -> ModelInputs:
    """Validate the shared arguments, load checkpoint, dataset and device (UsageError if bad)."""
    from model.checkpoint import file_sha256
    from model.stimuli.attack import AttackSettings

    check_attack_budget(args)
    device = apply_runtime(args)
    model, checkpoint = load_checkpoint_model(args.checkpoint, device)
    split = load_split(args, checkpoint)
    return ModelInputs(
        model=model,
        checkpoint=checkpoint,
        checkpoint_sha256=file_sha256(args.checkpoint),
        source=image_source(split),
        class_names=list(split.info.class_names),
        settings=AttackSettings(max_iterations=args.max_iterations, step_clip=args.step_clip),
        device=device,
    )


def image_source(split: Split) -> ImageSource:
    from model.stimuli.generate import ImageSource

    return ImageSource(
        dataset=split.info.name, split=split.name, images=split.images, labels=split.labels
    )


def run(args: argparse.Namespace) -> int:
    from contract.bundle import BundleError, BundleMeta
    from model.progress import progress_bar
    from model.stimuli.generate import CatchPlan, generate_bundle

    for flag, value, low in (
        ("--limit", args.limit, 1),
        ("--batch-size", args.batch_size, 1),
        ("--catch", args.catch, 0),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"--out {args.out} already exists; pass --overwrite to replace it")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    inputs = load_model_inputs(args)
    catch = None
    if args.catch:
        catch_source = image_source(load_split(args, inputs.checkpoint, args.catch_split))
        if args.catch > len(catch_source):
            raise UsageError(
                f"--catch {args.catch} exceeds the {len(catch_source)} images of the "
                f"{args.catch_split} split"
            )
        catch = CatchPlan(count=args.catch, seed=args.catch_seed, source=catch_source)
    checkpoint = inputs.checkpoint
    meta = BundleMeta(
        defense=checkpoint.defense,
        network=checkpoint.network,
        dataset=inputs.source.dataset,
        seed=checkpoint.seed,
        checkpoint_sha256=inputs.checkpoint_sha256,
        num_classes=len(inputs.class_names),
        class_names=inputs.class_names,
    )
    total = len(inputs.source) if args.limit is None else min(args.limit, len(inputs.source))
    bar = progress_bar(total, desc="stimuli", enabled=not args.no_progress and sys.stderr.isatty())
    try:
        report = generate_bundle(
            inputs.model,
            meta,
            inputs.source,
            args.out,
            settings=inputs.settings,
            limit=args.limit,
            catch=catch,
            batch_size=args.batch_size,
            device=inputs.device,
            overwrite=args.overwrite,
            progress=bar.update,
        )
    except BundleError as error:
        raise UsageError(str(error)) from error
    finally:
        bar.close()
    print(
        json.dumps(report.as_dict(), indent=2) if args.json else describe_report(report.as_dict())
    )
    return 0


def describe_report(summary: dict[str, Any]) -> str:
    """The human-readable summary printed after a bundle is written."""
    count = summary["adversarial"] or 1
    reached, success = summary["reached_confidence"], summary["success"]
    rho = summary["mean_rho_of_successes"]
    lines = [
        f"wrote {summary['bundle']}: {summary['adversarial']} adversarial + "
        f"{summary['catch']} catch stimuli in {summary['seconds']:.1f} s "
        f"({summary['adversarial_per_second']:.1f} images/s)",
        f"  p(target) >= C: {reached} ({reached / count:.1%}); target but below C: "
        f"{success - reached}; not the target: {summary['adversarial'] - success} "
        "(failures are kept, marked in the manifest)",
        f"  undone by 8-bit rounding: {summary['undone_by_quantization']}; originals "
        f"misclassified: {summary['misclassified_original']} (attacked toward their true "
        f"class: {summary['target_is_true_label']})",
        f"  attack iterations: median {summary['iterations_median']:g}, "
        f"max {summary['iterations_max']}",
        f"  mean rho of stimuli classified as target: {'n/a' if rho is None else f'{rho:.3f}'}",
    ]
    return "\n".join(lines)
