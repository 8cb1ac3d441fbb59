"""`mturk bonus` pays each (assignment, purpose) exactly once, even across crashes and after
MTurk has forgotten the request token; `mturk notify` respects MTurk's limits and says whom it
could not reach. Against the loopback fake, workers doing real HITs on the live server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from markets.mturk import bonus as bonus_module
from markets.mturk import notify as notify_module
from markets.mturk.cli import main as mturk
from study_server.db.models import BonusStatus, MTurkBonus
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study
from tests.fixtures.mturk import cli_settings, do_hit, records_by_image

BONUS = ["--amount", "0.25", "--reason", "Thank you for careful labels."]


@pytest.fixture
def worked_study(database_url, make_bundle, aws_env, live_server_factory, capsys):
    """A published study of 4 HITs: three workers did one each, synced; returns helpers."""
    fake = aws_env
    bundle = make_bundle(n_adversarial=20)
    import_study(database_url, bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(database_url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(database_url, fake)
    assert mturk(["publish", "--study", "ours-fc", "--url", server.url], settings) == 0
    session = session_for(database_url)
    try:
        from study_server.db.models import MTurkHit

        hits = list(session.scalars(select(MTurkHit.hit_id).order_by(MTurkHit.slot)))
    finally:
        session.close()
    by_image = records_by_image(bundle)
    with server.client() as web:
        done = [
            do_hit(fake, web, hit_id=hits[i], worker_id=f"AWORKER{i}", by_image=by_image)
            for i in range(3)
        ]
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    capsys.readouterr()
    return fake, settings, done


def _bonus_rows(url: str) -> dict[str, BonusStatus]:
    session = session_for(url)
    try:
        return {row.mturk_assignment_id: row.status for row in session.scalars(select(MTurkBonus))}
    finally:
        session.close()


def test_every_confirmed_submission_is_paid_once(worked_study, database_url, capsys):
    fake, settings, done = worked_study
    before = Decimal(fake.fake.handle("GetAccountBalance", {})["AvailableBalance"])
    assert mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings) == 0
    out = capsys.readouterr().out
    assert "3 bonus(es) 'bonus'" in out and "= $0.90" in out and "paid 3 bonus(es)" in out
    after = Decimal(fake.fake.handle("GetAccountBalance", {})["AvailableBalance"])
    assert before - after == Decimal("0.90")  # 3 x ($0.25 + 20% fee)
    paid = sorted((b.worker_id, b.amount) for b in fake.fake.bonuses())
    assert paid == [(f"AWORKER{i}", Decimal("0.25")) for i in range(3)]
    assert set(_bonus_rows(database_url).values()) == {BonusStatus.paid}

    assert mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings) == 0
    assert "0 bonus(es)" in capsys.readouterr().out
    assert len(fake.fake.bonuses()) == 3  # a rerun pays nobody again
    # Another purpose is another bonus.
    one = done[0].assignment_id
    args = ["bonus", "--study", "ours-fc", "--assignment", one, "--purpose", "attention", *BONUS]
    assert mturk(args, settings) == 0
    assert len(fake.fake.bonuses()) == 4


@pytest.mark.parametrize("forgotten", [False, True], ids=["within-24h", "token-forgotten"])
def test_a_run_interrupted_after_a_payment_pays_only_what_is_missing(
    worked_study, database_url, monkeypatch, capsys, forgotten
):
    """The crash falls between MTurk paying and the database recording it (the worst place)."""
    fake, settings, _ = worked_study
    real = bonus_module._record_paid
    calls = []

    def crash_after_first_payment(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt  # Ctrl-C, or the machine going away

    monkeypatch.setattr(bonus_module, "_record_paid", crash_after_first_payment)
    assert mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings) == 130
    assert len(fake.fake.bonuses()) == 1 and len(calls) == 1
    assert list(_bonus_rows(database_url).values()) == [BonusStatus.pending]

    if forgotten:
        fake.fake.advance(25 * 3600)  # MTurk remembers a request token for 24 hours only
    monkeypatch.setattr(bonus_module, "_record_paid", real)
    capsys.readouterr()
    assert mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings) == 0
    out = capsys.readouterr().out
    assert "paid 2 bonus(es), found 1 paid by an earlier run" in out
    workers = sorted(b.worker_id for b in fake.fake.bonuses())
    assert workers == ["AWORKER0", "AWORKER1", "AWORKER2"]  # each exactly once
    assert set(_bonus_rows(database_url).values()) == {BonusStatus.paid}


def test_a_failed_call_is_left_pending_and_finished_by_the_next_run(
    worked_study, database_url, capsys
):
    from markets.mturk.fake import Fault

    fake, settings, _ = worked_study
    fake.fake.inject_faults(
        *(Fault("ServiceFault", "internal error", status=500) for _ in range(5))
    )
    code = mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings)
    # GetAccountBalance ate the faults with retries, or SendBonus ran out of them: either way
    # nothing was paid twice and the next run completes it.
    assert code in (0, 1)
    capsys.readouterr()
    assert mturk(["bonus", "--study", "ours-fc", "--all-confirmed", *BONUS], settings) == 0
    assert sorted(b.worker_id for b in fake.fake.bonuses()) == ["AWORKER0", "AWORKER1", "AWORKER2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--all-confirmed", "--amount", "abc", "--reason", "Thanks for the work."], "--amount"),
        (["--all-confirmed", "--amount", "0", "--reason", "Thanks for the work."], "--amount 0"),
        (["--all-confirmed", "--amount", "0.257", "--reason", "Thanks for the work."], "0.257"),
        (["--all-confirmed", "--amount", "0.25", "--reason", "thx"], "--reason 'thx'"),
        (["--all-confirmed", *BONUS, "--purpose", "Bad Purpose"], "--purpose 'Bad Purpose'"),
        (["--assignment", "NOPE", *BONUS], "NOPE"),
        (["--all-confirmed", *BONUS, "--confirm-cost", "0.90"], "only applies with --live"),
    ],
)
def test_bad_bonus_requests_pay_nothing(worked_study, database_url, capsys, extra, message):
    fake, settings, _ = worked_study
    assert mturk(["bonus", "--study", "ours-fc", *extra], settings) == 2
    assert message in capsys.readouterr().err
    assert fake.fake.bonuses() == [] and _bonus_rows(database_url) == {}


def test_a_purpose_started_with_another_amount_is_refused(worked_study, capsys):
    fake, settings, done = worked_study
    one = ["--assignment", done[0].assignment_id]
    assert mturk(["bonus", "--study", "ours-fc", *one, *BONUS], settings) == 0
    other = ["--amount", "0.50", "--reason", "Thank you for careful labels."]
    assert mturk(["bonus", "--study", "ours-fc", *one, *other], settings) == 2
    assert "already has a 'bonus' bonus of $0.25" in capsys.readouterr().err
    assert len(fake.fake.bonuses()) == 1


def test_notify_reaches_reviewed_workers_in_batches_and_names_the_others(
    worked_study, monkeypatch, capsys
):
    fake, settings, done = worked_study
    first, second = done[0].assignment_id, done[1].assignment_id
    args = ["approve", "--study", "ours-fc", "--assignment", first, "--assignment", second]
    assert mturk(args, settings) == 0
    monkeypatch.setattr(notify_module, "WORKERS_PER_CALL", 1)
    message = ["--subject", "Thank you", "--message", "Results will be published in May."]
    capsys.readouterr()
    assert mturk(["notify", "--study", "ours-fc", "--all-reviewed", *message], settings) == 0
    assert "sent to 2 of 2 worker(s) in 2 call(s)" in capsys.readouterr().out
    assert sorted(n["worker"] for n in fake.fake.notifications) == ["AWORKER0", "AWORKER1"]

    # AWORKER2 submitted but was never approved or rejected: MTurk will not deliver.
    named = ["--worker", "AWORKER2", "--worker", "AWORKER0"]
    assert mturk(["notify", "--study", "ours-fc", *named, *message], settings) == 1
    captured = capsys.readouterr()
    assert "sent to 1 of 2" in captured.out
    assert "not delivered to AWORKER2 (HardFailure)" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--all-reviewed", "--subject", "x" * 201, "--message", "hi"], "--subject must be 1"),
        (["--all-reviewed", "--subject", "Hi", "--message", "x" * 4097], "1 to 4096"),
        (["--worker", "ASTRANGER", "--subject", "Hi", "--message", "hi"], "ASTRANGER"),
        (["--all-reviewed", "--subject", "Hi", "--message-file", "/nonexistent"], "--message-file"),
    ],
)
def test_bad_notifications_send_nothing(worked_study, capsys, extra, message):
    fake, settings, _ = worked_study
    assert mturk(["notify", "--study", "ours-fc", *extra], settings) == 2
    assert message in capsys.readouterr().err
    assert fake.fake.notifications == [] and fake.fake.calls_of("NotifyWorkers") == 0


def test_live_spending_needs_the_exact_total_typed_or_given(monkeypatch):
    from dataclasses import dataclass

    from contract.cli import UsageError
    from markets.confirm import cost_confirmation

    @dataclass
    class Plan:
        sandbox: bool
        total_cost: Decimal = Decimal("0.90")

        def describe(self) -> str:
            return "3 bonuses"

    said: list[str] = []
    assert cost_confirmation(None, action="pay bonuses", say=said.append)(Plan(sandbox=True))
    assert said == []  # the sandbox spends nothing and asks nothing
    assert cost_confirmation("0.90", action="pay bonuses", say=said.append)(Plan(sandbox=False))
    assert cost_confirmation("$0.90", action="pay bonuses", say=said.append)(Plan(sandbox=False))
    with pytest.raises(UsageError, match="does not match the total cost \\$0.90"):
        cost_confirmation("1.00", action="pay bonuses", say=said.append)(Plan(sandbox=False))
    with pytest.raises(UsageError, match="must be an amount in USD like 0.90"):
        cost_confirmation("lots", action="pay bonuses", say=said.append)(Plan(sandbox=False))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="needs confirmation: rerun with --confirm-cost 0.90"):
        cost_confirmation(None, action="pay bonuses", say=said.append)(Plan(sandbox=False))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "0.89")
    assert not cost_confirmation(None, action="pay bonuses", say=said.append)(Plan(sandbox=False))
    monkeypatch.setattr("builtins.input", lambda prompt: "$0.90")
    assert cost_confirmation(None, action="pay bonuses", say=said.append)(Plan(sandbox=False))
    assert all("LIVE" in line for line in said)
