"""The training and attack side's commands, one module each; `advcritic` is assembled from
these and the pipeline's (pipeline/cli.py).

Each module exposes `register(subparsers)`, which adds its parser and sets `handler`. A
handler raises `UsageError` for bad input (exit status 2, contract/cli.py). Modules are
imported when the parser is built, so keep their top level light: import torch-heavy code
inside the handler. `python -m model` (and `torchrun -m model`) runs these commands alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from contract.cli import run_command
from model.cpu_threads import configure_thread_waiting

COMMANDS = tuple(
    f"model.cli.{name}"
    for name in ("train", "attack", "evaluate", "table1", "stimuli", "figures", "proxy_labels")
)


def build_parser(modules: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advcritic",
        description="Train defended classifiers, attack them, build human-study stimuli, and "
        "run the whole pipeline.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in modules:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, modules: Sequence[str] = COMMANDS) -> int:
    configure_thread_waiting()  # before anything imports torch
    args = build_parser(modules).parse_args(argv)
    return run_command(f"advcritic {args.command}", lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
