"""`mturk`: publish and manage a study's HITs on Amazon Mechanical Turk.

Every command works on the sandbox unless `--live` is given; publishing on the live
marketplace also needs the total cost confirmed (typed at the prompt, or `--confirm-cost`).
Exit status: 0 done, 1 MTurk refused or failed (the message says why and what to do),
2 bad input (unknown study, malformed URL, missing reason...), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from contract.cli import UsageError
from markets.confirm import confirm_total
from markets.console import ReviewReport, report_review, run_market_command
from markets.console import counts as _counts
from markets.console import say as _say
from markets.mturk import errors
from markets.mturk.client import MTurkClient
from markets.mturk.hits import expire, status
from markets.mturk.publish import PublishConflict, PublishDeclined, PublishPlan, publish
from markets.mturk.question import QuestionError
from markets.mturk.review import ReviewRefused, approve, reject
from markets.mturk.sync import sync
from study_server.settings import Settings, get_settings

Sessions = sessionmaker[Session]


def _common(settings: Settings) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    market = parent.add_mutually_exclusive_group()
    market.add_argument(
        "--sandbox", dest="live", action="store_false", help="use the MTurk sandbox (the default)"
    )
    market.add_argument(
        "--live",
        dest="live",
        action="store_true",
        help="use the LIVE marketplace: real workers, real money",
    )
    parent.set_defaults(live=False)
    parent.add_argument(
        "--profile", help="AWS credentials profile (default: the standard AWS credential chain)"
    )
    parent.add_argument(
        "--database-url",
        default=settings.database_url,
        help="study database (default: DATABASE_URL or %(default)s)",
    )
    return parent


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mturk", description="Publish and manage a study's HITs on Amazon Mechanical Turk."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common(settings)]

    def command(
        name: str, handler: Callable[..., int], help_text: str, *, study: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=common, help=help_text, description=help_text)
        if study:
            sub.add_argument("--study", required=True, help="the study's slug, e.g. ours-fc")
        sub.set_defaults(handler=handler)
        return sub

    publish = command(
        "publish", _publish, "publish one HIT per assignment (only those not yet published)"
    )
    publish.add_argument(
        "--url", help="public base URL of the study server (default: ADVCRITIC_PUBLIC_URL)"
    )
    publish.add_argument(
        "--max-hits",
        type=int,
        help="publish at most this many HITs in total (a pilot); rerun to add more",
    )
    publish.add_argument(
        "--confirm-cost",
        help="with --live: the total cost in USD you agree to, instead of the prompt",
    )
    status = command("status", _status, "HITs, assignments and submissions of the study")
    status.add_argument(
        "--offline", action="store_true", help="only what the database holds; do not ask MTurk"
    )
    command(
        "sync", _sync, "pull assignments from MTurk and confirm or flag the server's submissions"
    )
    approve = command(
        "approve", _approve, "approve (pay) submitted work; by default all confirmed submissions"
    )
    approve.add_argument(
        "--assignment",
        action="append",
        default=[],
        metavar="ID",
        help="approve only these (repeatable)",
    )
    approve.add_argument("--feedback", help="message shown to the workers")
    reject = command("reject", _reject, "reject named assignments, with a reason the worker sees")
    reject.add_argument(
        "--assignment",
        action="append",
        required=True,
        metavar="ID",
        help="assignment to reject (repeatable)",
    )
    reject.add_argument("--reason", required=True, help="why, in words the worker will read")
    command("expire", _expire, "expire the study's open HITs now (no new workers can accept them)")
    command("balance", _balance, "the requester account's available balance", study=False)
    return parser


def _client(args: argparse.Namespace, settings: Settings) -> MTurkClient:
    return MTurkClient(settings.mturk, sandbox=not args.live, profile=args.profile)


def _confirm_live(args: argparse.Namespace) -> Callable[[PublishPlan], bool]:
    def confirm(plan: PublishPlan) -> bool:
        if plan.sandbox:
            return True
        _say(f"About to publish on the LIVE marketplace: {plan.describe()}")
        return confirm_total(plan.total_cost, agreed=args.confirm_cost)

    return confirm


def _publish(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    if args.max_hits is not None and args.max_hits < 1:
        raise UsageError(f"--max-hits must be at least 1, got {args.max_hits}")
    if args.confirm_cost is not None and not args.live:
        raise UsageError("--confirm-cost only applies with --live (the sandbox costs nothing)")
    page_url = _page_url(settings, args.url, args.study)
    result = publish(
        sessions=sessions,
        client=_client(args, settings),
        settings=settings.mturk,
        study_slug=args.study,
        page_url=page_url,
        max_hits=args.max_hits,
        confirm=_confirm_live(args),
    )
    plan = result.plan
    if not result.created and not result.adopted and not plan.slots:
        _say(
            f"study {plan.study_slug}: all {plan.published} HIT(s) already published "
            f"on the {_market(args)}; nothing to do"
        )
        return 0
    _say(f"HIT page: {page_url}")
    _say(
        f"study {plan.study_slug}: published {len(result.created)} HIT(s) on the {_market(args)}"
        f"{f', recovered {len(result.adopted)} already on MTurk' if result.adopted else ''}; "
        f"{plan.published + len(result.created)} of {plan.total_slots} now published"
    )
    if result.created:
        _say(
            f"cost of this run: ${plan.total_cost:.2f} "
            f"({'sandbox, not charged' if plan.sandbox else 'charged'})"
        )
    if result.hit_group_id:
        site = "workersandbox.mturk.com" if plan.sandbox else "worker.mturk.com"
        _say(f"workers find them at https://{site}/projects/{result.hit_group_id}/tasks")
    return 0


def _page_url(settings: Settings, url: str | None, study: str) -> str:
    """The HIT page: `<server>/hit/<study>`; a --url that already names that page is kept."""
    from study_server.links import hit_url

    if url and url.rstrip("/").endswith(f"/hit/{study}"):
        return url.rstrip("/")
    return hit_url(settings.model_copy(update={"public_url": url}) if url else settings, study)


def _market(args: argparse.Namespace) -> str:
    return "LIVE marketplace" if args.live else "sandbox"


def _status(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    report = status(
        sessions=sessions,
        study_slug=args.study,
        sandbox=not args.live,
        client=None if args.offline else _client(args, settings),
    )
    source = "MTurk now" if report.refreshed else "database, offline"
    _say(
        f"study {report.study_slug} on the {_market(args)}: "
        f"{report.hits} of {report.assignments} HITs published"
    )
    _say(f"  HITs ({source}): {_counts(report.hit_statuses)}")
    _say(f"  MTurk assignments (last sync): {_counts(report.mturk_assignments)}")
    _say(f"  server allocations: {_counts(report.allocations)}")
    _say(f"  submissions by verification: {_counts(report.verification)}")
    if report.verification.get("unverified"):
        _say(
            "  run `mturk sync` to confirm the unverified submissions before analysing or approving"
        )
    return 0


def _sync(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    report = sync(sessions=sessions, client=_client(args, settings), study_slug=args.study)
    _say(
        f"study {report.study_slug} on the {_market(args)}: "
        f"{report.hits} HITs, {report.hits_listed} listed by MTurk"
    )
    _say(f"  MTurk assignments: {_counts(report.assignments)}")
    _say(f"  server submissions confirmed: {report.confirmed}, flagged: {len(report.flagged)}")
    for allocation_id, reason in report.flagged:
        _say(f"    flagged allocation {allocation_id}: {reason}")
    if report.unmatched_submissions:
        _say(
            "  submitted on MTurk without labels on the server "
            f"({len(report.unmatched_submissions)}), review before paying:"
        )
        for assignment_id in report.unmatched_submissions:
            _say(f"    {assignment_id}")
    for problem in report.missing_hits:
        _say(f"  assignments not listed for HIT {problem}", sys.stderr)
    _say(f"  exclusion qualification granted to {report.granted} new worker(s)")
    for failure in report.grant_failures:
        _say(f"    not granted: {failure}", sys.stderr)
    return 0


def _review_output(report: ReviewReport, args: argparse.Namespace) -> int:
    return report_review(
        report, where=f"study {args.study} on the {_market(args)}", unit="assignment"
    )


def _approve(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    report = approve(
        sessions=sessions,
        client=_client(args, settings),
        study_slug=args.study,
        assignment_ids=args.assignment,
        feedback=args.feedback,
    )
    return _review_output(report, args)


def _reject(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    report = reject(
        sessions=sessions,
        client=_client(args, settings),
        study_slug=args.study,
        assignment_ids=args.assignment,
        reason=args.reason,
    )
    return _review_output(report, args)


def _expire(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    expired = expire(sessions=sessions, client=_client(args, settings), study_slug=args.study)
    _say(f"study {args.study} on the {_market(args)}: expired {len(expired)} open HIT(s)")
    return 0


def _balance(args: argparse.Namespace, settings: Settings, sessions: Sessions | None) -> int:
    balance = _client(args, settings).balance()
    held = f", ${balance.on_hold:.2f} on hold" if balance.on_hold is not None else ""
    _say(f"{_market(args)} balance: ${balance.available:.2f} available{held}")
    return 0


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    args = build_parser(settings).parse_args(argv)

    return run_market_command(
        "mturk",
        args,
        settings,
        usage=(QuestionError, ReviewRefused),
        refused=(errors.MTurkError, PublishDeclined, PublishConflict),
    )


if __name__ == "__main__":
    sys.exit(main())
