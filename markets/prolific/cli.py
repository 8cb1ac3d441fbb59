"""`prolific`: recruit a study's participants on Prolific, check their work, pay them.

Prolific has no sandbox: every `publish` and `bonus` spends the workspace's money, so both
show the total (Prolific's service fee included) and go on only when it is typed at the
prompt or passed as `--confirm-cost`. The token comes from the environment
(ADVCRITIC_PROLIFIC_TOKEN or PROLIFIC_TOKEN), everything else from ADVCRITIC_PROLIFIC_*
settings (study_server/settings.py). Rehearse against `python -m markets.prolific.fake`.
Exit status: 0 done, 1 Prolific refused or failed (its own words, and what to do), 2 bad input
(a missing token, an unknown study, a study already published, a bad id...), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from contract.cli import UsageError
from markets.confirm import confirm_decisions, confirm_total, money
from markets.console import (
    APPROVE,
    ReviewReport,
    counts,
    report_review,
    run_market_command,
    say,
    show_proposals,
)
from markets.prolific import errors
from markets.prolific.bonus import BonusDeclined, BonusPlan, BonusRefused, bonus, parse_bonuses
from markets.prolific.client import ProlificClient
from markets.prolific.models import REJECTION_CATEGORIES, StudyAction, minor_units
from markets.prolific.publish import (
    CostPlan,
    PublishConflict,
    PublishDeclined,
    PublishResult,
    publish,
)
from markets.prolific.review import RULE, ReviewRefused, approve, propose, reject
from markets.prolific.studies import status, transition
from markets.prolific.sync import sync
from study_server.settings import Settings, get_settings

Sessions = sessionmaker[Session]


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prolific", description="Recruit a study's participants on Prolific."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        default=settings.database_url,
        help="study database (default: DATABASE_URL or %(default)s)",
    )

    cost = argparse.ArgumentParser(add_help=False)
    cost.add_argument(
        "--confirm-cost",
        metavar="AMOUNT",
        help="the total you agree to spend (in the workspace's currency), instead of the prompt",
    )

    def command(
        name: str,
        handler: Callable[..., int],
        help_text: str,
        *,
        study: bool = True,
        spends: bool = False,
    ) -> argparse.ArgumentParser:
        parents = [common, cost] if spends else [common]
        sub = commands.add_parser(name, parents=parents, help=help_text, description=help_text)
        if study:
            sub.add_argument("--study", required=True, help="the study's slug, e.g. ours-fc")
        sub.set_defaults(handler=handler)
        return sub

    publish_cmd = command(
        "publish",
        _publish,
        "publish the study as one Prolific study (places = assignments)",
        spends=True,
    )
    publish_cmd.add_argument(
        "--url", help="public base URL of the study server (default: ADVCRITIC_PUBLIC_URL)"
    )
    publish_cmd.add_argument(
        "--allow-unedited-texts",
        action="store_true",
        help="publish although the consent or debrief text still holds [EDIT: ...] "
        "placeholders (they are then what your ethics board approved)",
    )
    status_cmd = command("status", _status, "the Prolific study, its submissions, the server's")
    status_cmd.add_argument(
        "--offline", action="store_true", help="only what the database holds; do not ask Prolific"
    )
    command(
        "sync",
        _sync,
        "pull Prolific's submissions; confirm or flag the server's (flagged work goes back to "
        "the pool)",
    )
    approve_cmd = command(
        "approve", _approve, "approve (pay) confirmed submissions; by default all of them"
    )
    approve_cmd.add_argument(
        "--submission",
        action="append",
        default=[],
        metavar="ID",
        help="approve only these submissions (the participants' SESSION_IDs; repeatable)",
    )
    review_cmd = command(
        "review",
        _review,
        "propose a decision per submission awaiting review from the attention policy; approve "
        "when confirmed (failed attention: approved, left out of Table 2)",
    )
    review_cmd.add_argument(
        "--yes", action="store_true", help="carry out the proposals without asking"
    )
    reject_cmd = command(
        "reject", _reject, "reject named confirmed submissions, with a category and a message"
    )
    reject_cmd.add_argument(
        "--submission",
        action="append",
        required=True,
        metavar="ID",
        help="submission to reject (repeatable)",
    )
    reject_cmd.add_argument(
        "--category",
        required=True,
        metavar="CATEGORY",
        help=f"Prolific's rejection category: {', '.join(REJECTION_CATEGORIES)}",
    )
    reject_cmd.add_argument(
        "--message",
        required=True,
        help="why, in words the participant will read (at least 100 characters)",
    )
    bonus_cmd = command(
        "bonus", _bonus, "pay confirmed participants a bonus (once each)", spends=True
    )
    bonus_cmd.add_argument(
        "--bonus",
        action="append",
        required=True,
        metavar="PARTICIPANT_ID,AMOUNT",
        help="who gets how much, in the workspace's currency (repeatable)",
    )
    bonus_cmd.add_argument("--reason", default="", help="why (kept in the audit of events)")
    bonus_cmd.add_argument(
        "--again", action="store_true", help="allow a second bonus for someone given one already"
    )
    transitions: tuple[tuple[str, StudyAction, str], ...] = (
        ("pause", "PAUSE", "pause the study: no new participants until `resume`"),
        ("resume", "START", "resume a paused study"),
        ("stop", "STOP", "stop the study for good (no new participants)"),
    )
    for name, action, text in transitions:
        command(name, _transitioner(action), text)
    command("balance", _balance, "the workspace's available balance", study=False)
    return parser


def _client(settings: Settings) -> ProlificClient:
    return ProlificClient(settings.prolific)


def _confirm(
    args: argparse.Namespace, currency: str, what: str, verb: str, nothing: str
) -> Callable[[CostPlan | BonusPlan], bool]:
    def confirm(plan: CostPlan | BonusPlan) -> bool:
        say(f"About to {what}: {_describe(plan, currency)}")
        return confirm_total(
            plan.total, agreed=args.confirm_cost, currency=currency, verb=verb, nothing=nothing
        )

    return confirm


def _describe(plan: CostPlan | BonusPlan, currency: str) -> str:
    if isinstance(plan, CostPlan):
        return plan.describe()
    vat = f" + {money(plan.vat, currency)} VAT" if plan.vat else ""
    return (
        f"{len(plan.bonuses)} bonus(es) = {money(plan.amount, currency)} + "
        f"{money(plan.fees, currency)} fees{vat} = {money(plan.total, currency)} "
        f"(Prolific's figures, bulk bonus {plan.bulk_id})"
    )


def _publish(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with _client(settings) as client:
        result = publish(
            sessions=sessions,
            client=client,
            settings=settings.prolific,
            study_slug=args.study,
            public_url=args.url or settings.public_url,
            allocation_timeout_s=settings.allocation_timeout_s,
            allow_unedited_texts=args.allow_unedited_texts,
            confirm=_confirm(
                args,
                settings.prolific.currency,
                "publish on Prolific (real participants, real money)",
                "publish",
                "nothing published",
            ),
        )
    _report_publish(args.study, result)
    return 0


def _report_publish(study: str, result: PublishResult) -> None:
    say(f"study page: {result.page_url}")
    if result.recovered:
        say(
            f"found Prolific study {result.prolific_study_id} made by an earlier run that "
            "stopped (by its internal name); recorded it instead of making a second one"
        )
    verb = "published" if result.published_now else "recorded, already published,"
    say(f"study {study}: {verb} as Prolific study {result.prolific_study_id} ({result.status})")
    say(
        "  exclusion: participant group "
        f"{result.group_id or 'not found (run `prolific sync`)'} blocklisted"
        + (
            f"; previous studies blocklisted: {', '.join(result.blocked_studies)}"
            if result.blocked_studies
            else ""
        )
    )
    if result.plan is not None and result.published_now:
        say(f"  cost: {money(result.plan.total, result.plan.currency)} from the workspace")


def _status(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    if args.offline:
        report = status(sessions=sessions, client=None, study_slug=args.study)
    else:
        with _client(settings) as client:
            report = status(sessions=sessions, client=client, study_slug=args.study)
    source = "Prolific now" if report.refreshed else "database, offline"
    taken = f", {report.places_taken} taken" if report.places_taken is not None else ""
    say(
        f"study {report.study_slug}: Prolific study {report.prolific_study_id} "
        f"{report.status} ({source}); {report.places} place(s){taken} for "
        f"{report.assignments} assignment(s)"
    )
    say(f"  Prolific submissions (last sync): {counts(report.submissions)}")
    say(f"  server allocations: {counts(report.allocations)}")
    say(f"  submissions by verification: {counts(report.verification)}")
    say(f"  flagged and returned to the pool: {report.returned_to_pool}")
    if report.bonuses:
        say(f"  bulk bonuses: {counts(report.bonuses)}")
    for bulk_id in report.unsettled_bonuses:
        say(
            f"  bulk bonus {bulk_id} was being paid when a run stopped: check in the Prolific "
            "app whether it was paid; it is never paid again automatically",
            sys.stderr,
        )
    if report.verification.get("unverified"):
        say("  run `prolific sync` to confirm the unverified submissions before approving")
    return 0


def _sync(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with _client(settings) as client:
        report = sync(
            sessions=sessions, client=client, settings=settings.prolific, study_slug=args.study
        )
    say(
        f"study {report.study_slug}: Prolific study {report.prolific_study_id} "
        f"{report.study_status}"
    )
    say(f"  Prolific submissions: {counts(report.listed)}")
    say(
        f"  server submissions confirmed: {report.confirmed}, flagged: {len(report.flagged)}, "
        f"still open on Prolific: {len(report.pending)}"
    )
    for allocation_id, reason in report.flagged:
        say(f"    flagged allocation {allocation_id}: {reason}")
    say(f"  returned to the pool: {report.returned_to_pool} assignment(s)")
    if report.unmatched:
        say(
            f"  finished on Prolific without labels on the server ({len(report.unmatched)}), "
            "review before paying:"
        )
        for submission_id in report.unmatched:
            say(f"    {submission_id}")
    say(f"  exclusion group: {report.group_added} participant(s) added")
    if report.group_problem:
        say(f"    not added: {report.group_problem}", sys.stderr)
    return 0


def _review_output(report: ReviewReport, study: str) -> int:
    return report_review(report, where=f"study {study} on Prolific", unit="submission")


def _approve(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with _client(settings) as client:
        report = approve(
            sessions=sessions,
            client=client,
            study_slug=args.study,
            submission_ids=args.submission,
        )
    return _review_output(report, args.study)


def _review(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    proposals = propose(sessions=sessions, study_slug=args.study)
    acting = show_proposals(
        proposals, where=f"study {args.study} on Prolific", unit="submission", rule=RULE
    )
    if not acting or not confirm_decisions(acting, yes=args.yes, say=say):
        return 0
    chosen = [p.submission for p in proposals if p.decision == APPROVE]
    with _client(settings) as client:
        report = approve(
            sessions=sessions, client=client, study_slug=args.study, submission_ids=chosen
        )
    report.left_for_review = [p.submission for p in proposals if p.decision != APPROVE]
    return _review_output(report, args.study)


def _reject(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with _client(settings) as client:
        report = reject(
            sessions=sessions,
            client=client,
            study_slug=args.study,
            submission_ids=args.submission,
            category=args.category,
            message=args.message,
        )
    return _review_output(report, args.study)


def _bonus(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    bonuses = parse_bonuses(args.bonus)
    currency = settings.prolific.currency
    with _client(settings) as client:
        plan = bonus(
            sessions=sessions,
            client=client,
            study_slug=args.study,
            bonuses=bonuses,
            reason=args.reason,
            again=args.again,
            confirm=_confirm(args, currency, "pay bonuses on Prolific", "pay", "nothing paid"),
            workspace_id=settings.prolific.workspace_id,
        )
    say(
        f"study {args.study}: paid {len(plan.bonuses)} bonus(es), "
        f"{money(plan.total, currency)} in all (bulk bonus {plan.bulk_id})"
    )
    return 0


def _transitioner(action: StudyAction) -> Callable[..., int]:
    def handler(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
        with _client(settings) as client:
            now = transition(sessions=sessions, client=client, study_slug=args.study, action=action)
        say(f"study {args.study}: Prolific study is now {now}")
        return 0

    return handler


def _balance(args: argparse.Namespace, settings: Settings, sessions: Sessions | None) -> int:
    workspace = settings.prolific.workspace_id
    if not workspace:
        raise UsageError("set ADVCRITIC_PROLIFIC_WORKSPACE_ID to the workspace to look at")
    with _client(settings) as client:
        balance = client.balance(workspace)
    currency = balance.currency_code
    say(
        f"workspace {workspace}: {money(minor_units(balance.available_balance), currency)} "
        f"available, {money(minor_units(balance.total_balance), currency)} in total"
    )
    return 0


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    args = build_parser(settings).parse_args(argv)

    return run_market_command(
        "prolific",
        args,
        settings,
        usage=(ReviewRefused, BonusRefused),
        refused=(errors.ProlificError, PublishDeclined, PublishConflict, BonusDeclined),
    )


if __name__ == "__main__":
    sys.exit(main())
