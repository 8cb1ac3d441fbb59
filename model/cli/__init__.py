"""`advcritic`: the training and attack side of the platform, one subcommand per module.

Each module in `COMMANDS` exposes `register(subparsers)`, which adds its parser and sets
`handler`. A handler raises `UsageError` for bad input; `main` turns that into a message
naming the bad value and exit status 2 (argparse's own status for malformed arguments).
Modules are imported when the parser is built, so keep their top level light: import
torch-heavy code inside the handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from model.cli.errors import UsageError
from model.cpu_threads import configure_thread_waiting

COMMANDS = (
    "train",
    "attack",
    "evaluate",
    "table1",
    "stimuli",
    "figures",
    "proxy_labels",
    "quickstart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advcritic",
        description="Train defended classifiers, attack them, and build human-study stimuli.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"model.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_thread_waiting()  # before anything imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as error:
        print(f"advcritic {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"advcritic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
