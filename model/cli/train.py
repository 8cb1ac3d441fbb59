"""`advcritic train`: train one defense on one network and dataset into a run folder.

    advcritic train --defense ours --net fc --preset cpu --seed 0 --out runs/ours-fc-s0
    advcritic train --out runs/ours-fc-s0 --resume          # continue an interrupted run
    torchrun --standalone --nproc_per_node 2 -m model train --defense at --net fc ...

Exit status: 0 done, 2 bad input (named in the message), 3 training diverged (the last good
checkpoint is kept), 130 interrupted (resume with --resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from contract.cli import UsageError
from model.cli.runtime import add_device_arguments, apply_runtime

DIVERGED_EXIT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a defended classifier (reference, at, vat, mm, ours)",
        description="Train one defense on one network. Settings come from a preset "
        "(paper: the paper's; cpu: mnist-5k in minutes) and the options below.",
    )
    parser.add_argument("--defense", help="reference | at | vat | mm | ours")
    parser.add_argument("--net", "--network", dest="network", help="fc | lenet5")
    parser.add_argument(
        "--preset",
        choices=("cpu", "paper"),
        default=None,
        help="cpu (default): mnist-5k, 20 epochs; paper: MNIST, 100 epochs",
    )
    parser.add_argument(
        "--dataset", help="mnist-5k | mnist | fashion-mnist (default: the preset's)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="global batch size over all processes")
    parser.add_argument(
        "--lr", type=float, help="classifier learning rate (default: the defense's)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="defense hyperparameter, repeatable (e.g. --param eps=0.3)",
    )
    parser.add_argument(
        "--train-limit", type=int, help="train on a fixed random subset of N images"
    )
    parser.add_argument(
        "--eval-every", type=int, default=1, help="test error every N epochs (0: only at the end)"
    )
    parser.add_argument(
        "--out", type=Path, help="run folder (default runs/DEFENSE-NET-DATASET-sSEED)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Where and how a command runs (shared by `train` and `table1`); see `apply_runtime`."""
    add_device_arguments(parser)
    parser.add_argument("--data-root", type=Path, help="folder with the dataset's IDX files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _resumed_config(args: argparse.Namespace, saved: Any) -> Any:
    """The saved config, checked against every option the user gave explicitly."""
    given = {
        "defense": args.defense,
        "network": args.network,
        "preset": args.preset,
        "dataset": args.dataset,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "train_limit": args.train_limit,
    }
    from contract.names import canonical_defense, canonical_network
    from model.datasets import canonical_dataset_name

    canonical = {
        "defense": canonical_defense,
        "network": canonical_network,
        "dataset": canonical_dataset_name,
    }
    for name, value in given.items():
        if value is None:
            continue
        value = canonical.get(name, lambda v: v)(value)
        if value != getattr(saved, name):
            raise UsageError(
                f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                f"({getattr(saved, name)}); drop the option or choose another --out"
            )
    if args.param or args.lr is not None:
        raise UsageError("--param and --lr cannot change a run being resumed")
    epochs = saved.epochs if args.epochs is None else args.epochs
    if epochs < saved.epochs:
        raise UsageError(f"--epochs {epochs} is fewer than the run's {saved.epochs}")
    return dataclasses.replace(saved, epochs=epochs)


def _new_config(args: argparse.Namespace) -> Any:
    from model.defenses import parse_assignments
    from model.training import build_config

    missing = [
        flag for flag, value in (("--defense", args.defense), ("--net", args.network)) if not value
    ]
    if missing:
        raise UsageError(f"{' and '.join(missing)} required to start a run")
    return build_config(
        defense=args.defense,
        network=args.network,
        seed=0 if args.seed is None else args.seed,
        preset=args.preset or "cpu",
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        params=parse_assignments(args.param),
        train_limit=args.train_limit,
        eval_every=args.eval_every,
    )


def _config(args: argparse.Namespace) -> tuple[Any, Path, bool]:
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.training import CHECKPOINT_FILE, TrainConfig

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the folder of the run to continue")
    if args.resume and (args.out / CHECKPOINT_FILE).exists():
        try:
            saved = TrainConfig.from_dict(load_checkpoint(args.out / CHECKPOINT_FILE).config)
        except (CheckpointError, ValueError, KeyError) as error:
            raise UsageError(f"cannot resume from {args.out}: {error}") from error
        return _resumed_config(args, saved), args.out, True
    config = _new_config(args)
    out = args.out or Path("runs") / config.run_name()
    return config, out, False


def run(args: argparse.Namespace) -> int:
    from model.training import Trainer, TrainingDiverged

    device = apply_runtime(args)
    try:
        config, out, resume = _config(args)
        trainer = Trainer(
            config,
            out,
            device=device,
            resume=resume,
            progress=not args.no_progress,
            data_root=args.data_root,
        )
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from error
    if trainer.start_epoch >= trainer.total_epochs:
        trainer.context.close()
        print(f"{out} is already complete ({trainer.start_epoch}/{trainer.total_epochs} epochs)")
        return 0
    action = "resuming at" if trainer.start_epoch else "training"
    if trainer.context.is_main:
        print(
            f"{action} {config.run_name()} epoch {trainer.start_epoch + 1}/{trainer.total_epochs} "
            f"({config.preset} preset, {trainer.context.world_size} process(es)) -> {out}"
        )
    try:
        result = trainer.run()
    except TrainingDiverged as error:
        print(f"advcritic train: error: {error}", file=sys.stderr)
        return DIVERGED_EXIT
    if trainer.context.is_main:
        shown = "n/a" if result.test_error is None else f"{100 * result.test_error:.2f}%"
        print(
            f"saved {result.checkpoint} "
            f"(epoch {result.epoch}/{result.total_epochs}, test error {shown})"
        )
    return 0
