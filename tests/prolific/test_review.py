"""`prolific review`: a proposal per submission awaiting review from the attention policy,
acted on only when confirmed. Prolific forbids rejecting for failed attention checks that are
not of its kinds, so a submission that failed the policy is approved and left out of Table 2,
never rejected."""

from __future__ import annotations

from sqlalchemy import select

from markets.prolific.cli import main as prolific
from study_server.db.models import ProlificStudy
from testkit.databases import session_for
from testkit.studies import attach_lab_texts, import_study
from tests.fixtures.mturk import label_by_rule, records_by_image
from tests.fixtures.prolific import (
    participant,
    prolific_cli_settings,
    prolific_server_settings,
    take_part,
)


def careless(record):
    return (record.original_label + 1) % 10 if record.kind == "catch" else label_by_rule(record)


def careful(record):
    return record.original_label if record.kind == "catch" else label_by_rule(record)


def test_failed_attention_is_approved_and_excluded_never_rejected(
    sqlite_database_url, make_bundle, fake_prolific, live_server_factory, capsys
):
    url = sqlite_database_url
    bundle = make_bundle(n_adversarial=15, n_catch=3)
    import_study(url, bundle, items_per_assignment=5)
    attach_lab_texts(url, "ours-fc")
    server = live_server_factory(prolific_server_settings(url, fake_prolific))
    settings = prolific_cli_settings(url, fake_prolific)
    argv = ["publish", "--study", "ours-fc", "--url", server.url, "--confirm-cost", "4.00"]
    assert prolific(argv, settings) == 0
    session = session_for(url)
    try:
        study_id = session.scalars(select(ProlificStudy.prolific_study_id)).one()
    finally:
        session.close()
    by_image = records_by_image(bundle)
    with server.client() as web:
        done = [
            take_part(
                fake_prolific, web, study_id=study_id, participant_id=participant(n),
                by_image=by_image, choose=choose,
            )
            for n, choose in ((1, careful), (2, careless))
        ]  # fmt: skip
    assert prolific(["sync", "--study", "ours-fc"], settings) == 0
    capsys.readouterr()
    assert prolific(["review", "--study", "ours-fc"], settings) == 2  # no terminal, no --yes
    captured = capsys.readouterr()
    assert "rerun with --yes" in captured.err
    assert "never rejected" in captured.out and "reject " not in captured.out
    assert f"approve {done[1].session_id}  {participant(2)}  [not counted] failed attention" in (
        captured.out
    )
    assert f"approve {done[0].session_id}  {participant(1)}  [counted] passed" in captured.out
    assert {fake_prolific.fake.submission(d.session_id)["status"] for d in done} == {
        "AWAITING REVIEW"
    }
    assert prolific(["review", "--study", "ours-fc", "--yes"], settings) == 0
    assert "approved 2 submission(s)" in capsys.readouterr().out
    assert {fake_prolific.fake.submission(d.session_id)["status"] for d in done} == {"APPROVED"}
