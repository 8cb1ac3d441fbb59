"""The exit-status convention every command of the platform follows.

    0    done
    1    a service refused (MTurk, Prolific, the database): the message says what to do
    2    bad input: the message names the value and what would be accepted; nothing changed
    130  interrupted (Ctrl-C)
    141  its output was closed early (`| head`): stopped there, one line on standard error

Handlers raise `UsageError` (or an error type the command declares as bad input) and
`run_command` turns it into one line on standard error and the status above, so `advcritic`,
`study-server`, `mturk`, `prolific` and `analyze-study` read alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


class UsageError(Exception):
    """Bad input from the user: the message names the bad value and what is accepted."""


def run_command(
    name: str,
    call: Callable[[], int | None],
    *,
    usage: tuple[type[BaseException], ...] = (),
    refused: tuple[type[BaseException], ...] = (),
) -> int:
    """Runs `call` and maps its outcome to the exit status; `name` prefixes every message
    (e.g. "mturk publish")."""
    try:
        return int(call() or 0)
    except (UsageError, *usage) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except refused as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop where the command was, as a program killed
        # by SIGPIPE would, without a traceback or a second error when Python flushes stdout.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        print(f"{name}: stopped: its output was closed", file=sys.stderr)
        return EXIT_BROKEN_PIPE
