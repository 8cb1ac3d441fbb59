"""`mturk`: publish and manage a study's HITs on Amazon Mechanical Turk.

Every command works on the sandbox unless `--live` is given; publishing on the live
marketplace also needs the total cost confirmed (typed at the prompt, or `--confirm-cost`).
Exit status: 0 done, 1 MTurk refused or failed (the message says why and what to do),
2 bad input (unknown study, malformed URL, missing reason...), 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from contract.cli import UsageError
from markets.confirm import confirm_decisions, cost_confirmation
from markets.console import ReviewReport, report_review, run_market_command, show_proposals
from markets.console import counts as _counts
from markets.console import say as _say
from markets.mturk import errors
from markets.mturk.bonus import BonusDeclined, BonusRefused, pay_bonus, plan_bonus
from markets.mturk.client import MTurkClient
from markets.mturk.hits import expire, status
from markets.mturk.notify import NotifyRefused, notify
from markets.mturk.publish import (
    HoldOutlastsAssignment,
    PublishConflict,
    PublishDeclined,
    UneditedTexts,
    publish,
)
from markets.mturk.question import QuestionError
from markets.mturk.review import RULE, ReviewRefused, approve, carry_out, propose, reject
from markets.mturk.sync import SyncReport, sync
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
    publish.add_argument(
        "--allow-unedited-texts",
        action="store_true",
        help="with --live: publish although the consent or debrief text still holds "
        "[EDIT: ...] placeholders (they are then what your ethics board approved)",
    )
    status = command("status", _status, "HITs, assignments and submissions of the study")
    status.add_argument(
        "--offline", action="store_true", help="only what the database holds; do not ask MTurk"
    )
    sync = command(
        "sync", _sync, "pull assignments from MTurk and confirm or flag the server's submissions"
    )
    sync.add_argument(
        "--watch",
        action="store_true",
        help="keep syncing for the life of the study (a line per run; Ctrl-C stops, rerun resumes)",
    )
    sync.add_argument(
        "--every",
        default="5m",
        metavar="TIME",
        help="with --watch: time between runs, e.g. 90s, 5m, 1h (default 5m, at least 30s)",
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
    review = command(
        "review",
        _review,
        "propose approve or reject per submitted assignment from the attention policy; act "
        "only when confirmed",
    )
    review.add_argument(
        "--reject-failed-attention",
        action="store_true",
        help="propose rejecting work that failed the attention policy (default: approve it and "
        "leave its labels out of Table 2); needs --reason",
    )
    review.add_argument(
        "--reason",
        help="with --reject-failed-attention: what the worker reads (their numbers are added)",
    )
    review.add_argument("--feedback", help="message shown to the workers whose work is approved")
    review.add_argument("--yes", action="store_true", help="carry out the proposals without asking")
    reject = command("reject", _reject, "reject named assignments, with a reason the worker sees")
    reject.add_argument(
        "--assignment",
        action="append",
        required=True,
        metavar="ID",
        help="assignment to reject (repeatable)",
    )
    reject.add_argument("--reason", required=True, help="why, in words the worker will read")
    bonus = command(
        "bonus",
        _bonus,
        "pay a bonus once per assignment and purpose (named assignments, or every confirmed one)",
    )
    who = bonus.add_mutually_exclusive_group(required=True)
    who.add_argument("--assignment", action="append", default=[], metavar="ID", help="repeatable")
    who.add_argument(
        "--all-confirmed",
        action="store_true",
        help="every submission MTurk confirmed (mturk sync) and nobody rejected",
    )
    who.add_argument(
        "--passed-attention",
        action="store_true",
        help="every confirmed submission that passed the study's attention policy",
    )
    bonus.add_argument("--amount", required=True, help="USD per bonus, e.g. 0.25")
    bonus.add_argument("--reason", required=True, help="why, in words the worker will read")
    bonus.add_argument(
        "--purpose",
        default="bonus",
        help="what the bonus is for; each (assignment, purpose) is paid once (default: bonus)",
    )
    bonus.add_argument(
        "--confirm-cost", help="with --live: the total cost in USD you agree to (no prompt)"
    )
    notify = command(
        "notify",
        _notify,
        "message the study's workers (MTurk reaches only workers you approved or rejected)",
    )
    recipients = notify.add_mutually_exclusive_group(required=True)
    recipients.add_argument("--worker", action="append", default=[], metavar="ID")
    recipients.add_argument(
        "--all-reviewed",
        action="store_true",
        help="every worker of the study whose assignment you approved or rejected",
    )
    notify.add_argument("--subject", required=True, help="at most 200 characters")
    text = notify.add_mutually_exclusive_group(required=True)
    text.add_argument("--message", help="the text, at most 4,096 characters")
    text.add_argument("--message-file", type=Path, help="read the text from this file")
    command("expire", _expire, "expire the study's open HITs now (no new workers can accept them)")
    command("balance", _balance, "the requester account's available balance", study=False)
    return parser


def _client(args: argparse.Namespace, settings: Settings) -> MTurkClient:
    return MTurkClient(settings.mturk, sandbox=not args.live, profile=args.profile)


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
        confirm=cost_confirmation(args.confirm_cost, action="publish", say=_say),
        allocation_timeout_s=settings.allocation_timeout_s,
        allow_unedited_texts=args.allow_unedited_texts,
    )
    plan = result.plan
    for text in result.unedited:
        _say(f"note: not the lab's own text yet: {text} (the live site refuses it)", sys.stderr)
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
    if result.exclusion and result.created:
        siblings = result.siblings_excluded
        _say(
            f"exclusion: workers holding {result.exclusion!r} cannot see these HITs"
            + (
                f"; granted to {siblings.granted} worker(s) of sibling studies"
                if siblings.granted
                else ""
            )
        )
        for failure in siblings.failures:
            _say(f"  not granted: {failure}", sys.stderr)
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


MIN_WATCH_S = 30


def parse_every(text: str) -> int:
    """'90s', '5m', '1h' or plain seconds -> seconds (at least MIN_WATCH_S)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text.lower())
    if not match:
        raise UsageError(f"--every must be a time like 90s, 5m or 1h, got {text!r}")
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds < MIN_WATCH_S:
        raise UsageError(f"--every must be at least {MIN_WATCH_S}s, got {text!r}")
    return seconds


def _sync(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    if not args.watch:
        if args.every != "5m":
            raise UsageError("--every only applies with --watch")
        _sync_report(
            sync(sessions=sessions, client=_client(args, settings), study_slug=args.study), args
        )
        return 0
    return _watch(args, settings, sessions, parse_every(args.every))


def _sync_report(report: SyncReport, args: argparse.Namespace) -> None:
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


def _watch(
    args: argparse.Namespace,
    settings: Settings,
    sessions: Sessions,
    every_s: int,
    *,
    runs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sync every `every_s` seconds until interrupted (or `runs` times, for tests).

    Each run is a whole `mturk sync` (its database work one transaction, the grants
    idempotent), so stopping anywhere and starting again loses nothing. The first run must
    succeed (a wrong study or credentials stop at once); a later failure is reported and
    the next run tries again.
    """
    client = _client(args, settings)
    _say(
        f"mturk sync --watch: study {args.study} on the {_market(args)}, every {every_s} s "
        "(Ctrl-C to stop; running it again resumes)"
    )
    flagged: set[int] = set()
    run = 0
    while runs is None or run < runs:
        run += 1
        started = datetime.now(UTC)
        try:
            report = sync(sessions=sessions, client=client, study_slug=args.study)
        except errors.MTurkError as error:
            if run == 1:
                raise
            _say(
                f"{started:%Y-%m-%d %H:%M:%S}Z run {run}: MTurk failed ({error}); trying again",
                sys.stderr,
            )
        else:
            new = [(a, why) for a, why in report.flagged if a not in flagged]
            flagged |= {a for a, _ in report.flagged}
            _say(
                f"{started:%Y-%m-%d %H:%M:%S}Z run {run}: {report.hits} HITs, "
                f"MTurk assignments {_counts(report.assignments)}; confirmed {report.confirmed}, "
                f"flagged {len(report.flagged)} ({len(new)} new); "
                f"excluded {report.granted} new worker(s)"
            )
            for allocation_id, reason in new:
                _say(f"    flagged allocation {allocation_id}: {reason}")
            for failure in report.grant_failures:
                _say(f"    not granted: {failure}", sys.stderr)
        if runs is not None and run >= runs:
            break
        sleep(every_s)
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


def _review(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    proposals = propose(
        sessions=sessions,
        sandbox=not args.live,
        study_slug=args.study,
        reject_failed_attention=args.reject_failed_attention,
        reason=args.reason,
    )
    acting = show_proposals(
        proposals,
        where=f"study {args.study} on the {_market(args)}",
        unit="submitted assignment",
        rule=RULE,
    )
    if not acting or not confirm_decisions(acting, yes=args.yes, say=_say):
        return 0
    approved, rejected = carry_out(
        sessions=sessions,
        client=_client(args, settings),
        study_slug=args.study,
        proposals=proposals,
        feedback=args.feedback,
    )
    status = _review_output(approved, args)
    if rejected.done or rejected.failed:
        status = max(status, _review_output(rejected, args))
    return status


def _reject(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    report = reject(
        sessions=sessions,
        client=_client(args, settings),
        study_slug=args.study,
        assignment_ids=args.assignment,
        reason=args.reason,
    )
    return _review_output(report, args)


def _bonus(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    try:
        amount = Decimal(args.amount.lstrip("$"))
    except InvalidOperation as error:
        raise UsageError(
            f"--amount must be an amount in USD like 0.25, got {args.amount!r}"
        ) from error
    if args.confirm_cost is not None and not args.live:
        raise UsageError("--confirm-cost only applies with --live (the sandbox costs nothing)")
    client = _client(args, settings)
    plan = plan_bonus(
        sessions=sessions,
        client=client,
        fee_fraction=settings.mturk.fee_fraction,
        study_slug=args.study,
        amount=amount,
        reason=args.reason,
        purpose=args.purpose,
        assignment_ids=args.assignment,
        every_confirmed=args.all_confirmed,
        passed_attention=args.passed_attention,
    )
    _say(plan.describe())
    report = pay_bonus(
        sessions=sessions,
        client=client,
        plan=plan,
        reason=args.reason,
        confirm=cost_confirmation(args.confirm_cost, action="pay bonuses", say=_say),
    )
    _say(
        f"study {args.study} on the {_market(args)}: paid {len(report.paid)} bonus(es)"
        + (f", found {len(report.found_paid)} paid by an earlier run" if report.found_paid else "")
    )
    for assignment_id, reason in report.failed:
        _say(f"  not paid {assignment_id}: {reason}", sys.stderr)
    return 1 if report.failed else 0


def _notify(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    if args.message_file is not None:
        try:
            text = args.message_file.read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--message-file {args.message_file}: {error.strerror}") from error
    else:
        text = args.message
    report = notify(
        sessions=sessions,
        client=_client(args, settings),
        study_slug=args.study,
        subject=args.subject,
        text=text,
        worker_ids=args.worker,
        all_reviewed=args.all_reviewed,
    )
    _say(
        f"study {args.study} on the {_market(args)}: message sent to {report.delivered} of "
        f"{len(report.recipients)} worker(s) in {report.calls} call(s)"
    )
    for worker, code, message in report.failed:
        _say(f"  not delivered to {worker} ({code}): {message}", sys.stderr)
    return 1 if report.failed else 0


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
        usage=(
            QuestionError,
            ReviewRefused,
            HoldOutlastsAssignment,
            BonusRefused,
            NotifyRefused,
            UneditedTexts,
        ),
        refused=(errors.MTurkError, PublishDeclined, PublishConflict, BonusDeclined),
    )


if __name__ == "__main__":
    sys.exit(main())
