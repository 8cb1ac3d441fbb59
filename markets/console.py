"""What the market commands share at the command line: printing, counts, and running the
chosen subcommand with the study database open and its outcome mapped to the exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from contract.cli import run_command
from study_server.db.access import DatabaseNotReady, study_sessions
from study_server.db.store import StudyNotFound

# Subcommands that never open the study database.
NO_DATABASE = frozenset({"balance"})


def say(message: str, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stdout, flush=True)


def counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"


@dataclass
class ReviewReport:
    """What an approve or reject did: the ids done, refused (with the market's words), and
    left for the researcher (submitted on the market without confirmed labels here)."""

    decision: str
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    left_for_review: list[str] = field(default_factory=list)


APPROVE, REJECT, LEAVE = "approve", "reject", "leave"


@dataclass(frozen=True)
class Proposal:
    """What a `review` command proposes for one submission, and why (see docs/protocol.md
    for each market's rule on attention checks)."""

    submission: str  # MTurk's assignment id, Prolific's submission (session) id
    worker_id: str
    decision: str  # APPROVE, REJECT or LEAVE (nothing done)
    counted: bool  # whether its labels count in Table 2
    why: str
    message: str | None = None  # what the person reads with a rejection


def show_proposals(proposals: list[Proposal], *, where: str, unit: str, rule: str) -> int:
    """Print the proposals; the number that would be acted on."""
    say(f"{where}: {len(proposals)} {unit}(s) to review; {rule}")
    for p in proposals:
        counted = "counted" if p.counted else "not counted"
        say(f"  {p.decision:<7} {p.submission}  {p.worker_id}  [{counted}] {p.why}")
        if p.message:
            say(f"          they read: {p.message}")
    acting = sum(1 for p in proposals if p.decision in (APPROVE, REJECT))
    if not acting:
        say("nothing to decide")
    return acting


def report_review(report: ReviewReport, *, where: str, unit: str) -> int:
    """Print a review's outcome ("study ours-fc on Prolific: approved 3 submission(s)");
    exit status 1 if the market refused any."""
    verb = report.decision.lower()
    say(f"{where}: {verb} {len(report.done)} {unit}(s)")
    for item in report.done:
        say(f"  {verb} {item}")
    for item in report.left_for_review:
        say(f"  left for review (no confirmed labels on the server): {item}")
    for item, reason in report.failed:
        say(f"  not {verb} {item}: {reason}", sys.stderr)
    return 1 if report.failed else 0


def run_market_command(
    prog: str,
    args: argparse.Namespace,
    settings: Any,
    *,
    usage: tuple[type[BaseException], ...],
    refused: tuple[type[BaseException], ...],
) -> int:
    """Call `args.handler(args, settings, sessions)` (sessions None for `NO_DATABASE`); an
    unknown study or an unmigrated database is bad input, like the `usage` errors."""

    def call() -> int:
        if args.command in NO_DATABASE:
            return args.handler(args, settings, None)
        with study_sessions(args.database_url) as sessions:
            return args.handler(args, settings, sessions)

    return run_command(
        f"{prog} {args.command}",
        call,
        usage=(StudyNotFound, DatabaseNotReady, *usage),
        refused=refused,
    )
