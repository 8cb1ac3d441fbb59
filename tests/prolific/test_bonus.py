"""`prolific bonus` pays each confirmed participant once: the cost is Prolific's own figure,
confirmed first; a refused payment is recorded as not paid; a payment whose answer was lost is
never repeated automatically, and the status says which one to check."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from markets.prolific.cli import main as prolific
from markets.prolific.fake import FakeError
from study_server.db.models import ProlificBonus
from testkit.databases import session_for
from tests.fixtures.prolific import participant, take_part


@pytest.fixture
def confirmed(prolific_running, fake_prolific, capsys):
    """Two participants with confirmed submissions."""
    with prolific_running.server.client() as web:
        for n in (1, 2):
            take_part(
                fake_prolific,
                web,
                study_id=prolific_running.study_id,
                participant_id=participant(n),
                by_image=prolific_running.by_image,
            )
    assert prolific(["sync", "--study", "ours-fc"], prolific_running.settings) == 0
    capsys.readouterr()
    return prolific_running


def _bonuses(url: str) -> list[tuple[str, str]]:
    session = session_for(url)
    try:
        return [(b.bulk_id, b.status) for b in session.scalars(select(ProlificBonus))]
    finally:
        session.close()


def _bonus(settings, *entries: str, confirm: str | None = None, again: bool = False) -> int:
    argv = ["bonus", "--study", "ours-fc"]
    for entry in entries:
        argv += ["--bonus", entry]
    argv += ["--confirm-cost", confirm] if confirm else []
    return prolific(argv + (["--again"] if again else []), settings)


def test_two_bonuses_in_one_payment_at_prolifics_figures(confirmed, fake_prolific, capsys):
    code = _bonus(
        confirmed.settings, f"{participant(1)},0.50", f"{participant(2)},1.00", confirm="2.00"
    )
    out = capsys.readouterr().out
    assert code == 0 and "2 bonus(es) = £1.50 + £0.50 fees = £2.00" in out
    ((bulk_id, state),) = _bonuses(confirmed.database_url)
    assert state == "paid" and fake_prolific.fake.bulk_bonus_payments(bulk_id) == 1
    code = _bonus(confirmed.settings, f"{participant(2)},1.00", confirm="1.33")
    assert code == 2 and "already given a bonus" in capsys.readouterr().err
    assert _bonus(confirmed.settings, f"{participant(2)},1.00", confirm="1.33", again=True) == 0


def test_a_refused_payment_is_recorded_as_not_paid(confirmed, fake_prolific, capsys):
    # The balance covers the bonus when checked, and Prolific then refuses the payment.
    original = fake_prolific.fake.pay_bonuses

    def refuse(bulk_id):
        raise FakeError(400, "Payments are frozen for this workspace.")

    fake_prolific.fake.pay_bonuses = refuse
    code = _bonus(confirmed.settings, f"{participant(1)},0.50", confirm="0.67")
    assert code == 1 and "Payments are frozen" in capsys.readouterr().err
    assert [state for _, state in _bonuses(confirmed.database_url)] == ["refused"]
    fake_prolific.fake.pay_bonuses = original
    # Not paid, so not "already given": the participant can be paid now.
    assert _bonus(confirmed.settings, f"{participant(1)},0.50", confirm="0.67") == 0


def test_a_payment_without_an_answer_is_never_repeated(confirmed, fake_prolific, capsys):
    fake_prolific.fake.lose_answer_of("pay_bonuses")  # Prolific pays, the answer is lost
    code = _bonus(confirmed.settings, f"{participant(1)},0.50", confirm="0.67")
    assert code == 1 and "HTTP 503" in capsys.readouterr().err
    ((bulk_id, state),) = _bonuses(confirmed.database_url)
    assert state == "paying" and fake_prolific.fake.bulk_bonus_payments(bulk_id) == 1
    assert _bonus(confirmed.settings, f"{participant(1)},0.50", confirm="0.67") == 2
    assert "already given a bonus" in capsys.readouterr().err
    assert prolific(["status", "--study", "ours-fc"], confirmed.settings) == 0
    err = capsys.readouterr().err
    assert f"bulk bonus {bulk_id} was being paid when a run stopped" in err
    assert fake_prolific.fake.bulk_bonus_payments(bulk_id) == 1


def test_nothing_is_paid_unconfirmed_or_beyond_the_balance(
    confirmed, fake_prolific, capsys, monkeypatch
):
    code = _bonus(confirmed.settings, f"{participant(1)},0.50")
    assert code == 2 and "rerun with --confirm-cost 0.67" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    code = _bonus(confirmed.settings, f"{participant(1)},0.50")
    assert code == 1 and "not confirmed; nothing paid" in capsys.readouterr().err
    fake_prolific.fake.set_balance("0.50")
    code = _bonus(confirmed.settings, f"{participant(1)},0.50", confirm="0.67")
    assert code == 1 and "balance is £0.50, these bonuses cost £0.67" in capsys.readouterr().err
    assert {state for _, state in _bonuses(confirmed.database_url)} == {"declined"}
    assert fake_prolific.fake.calls_of("pay_bonuses") == 0
