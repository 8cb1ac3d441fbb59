"""`advcritic`: the model side's commands plus the pipeline's, in one command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from model import cli as model_cli

COMMANDS = (*model_cli.COMMANDS, "pipeline.quickstart", "pipeline.dry_run")


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
