"""The protocol on MTurk, end to end against the loopback fake, on SQLite and PostgreSQL.

Two studies (two defenses) form one experiment. Both are published; workers do HITs of the
first through the live study server; `mturk sync` grants the experiment's qualification, so
a worker of the first study is excluded from the second on MTurk (the fake refuses the
accept) and by the server (409, even with a forged HIT page URL). A careless worker fails the
attention policy: Table 2 (`analyze-study --experiment`) leaves them out with their numbers;
`mturk review` proposes approve-and-exclude and acts only once confirmed, and rejects only
when asked to, with the worker's numbers in the reason. A bonus run for everyone who passed
is interrupted after its first payment and run again: each worker is paid exactly once.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from analysis.cli import main as analyze_study
from markets.mturk import bonus as bonus_module
from markets.mturk.cli import main as mturk
from study_server.cli import main as study_server
from study_server.db.models import Allocation as AllocationRow
from study_server.db.models import AttentionOutcome, MTurkHit, Study, Worker
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study
from tests.fixtures.mturk import cli_settings, do_hit, label_by_rule, records_by_image
from tests.server.flow import consent_sha256

BONUS = ["--amount", "0.25", "--reason", "Thank you: every check image was right."]


def careful(record):
    return record.original_label if record.kind == "catch" else label_by_rule(record)


def careless(record):
    """Every catch trial wrong: fails the default policy (half of them right)."""
    if record.kind == "catch":
        return (record.original_label + 1) % 10
    return label_by_rule(record)


def _hits(url: str, slug: str) -> list[str]:
    session = session_for(url)
    try:
        return list(
            session.scalars(
                select(MTurkHit.hit_id)
                .join(Study, Study.id == MTurkHit.study_id)
                .where(Study.slug == slug)
                .order_by(MTurkHit.slot)
            )
        )
    finally:
        session.close()


def _attention(url: str) -> dict[str, AttentionOutcome | None]:
    session = session_for(url)
    try:
        rows = session.execute(
            select(Worker.external_id, AllocationRow.attention).join(
                Worker, Worker.id == AllocationRow.worker_id
            )
        )
        return dict(rows.all())
    finally:
        session.close()


def _table(capsys, url: str, *extra: str) -> dict:
    capsys.readouterr()
    argv = ["--experiment", "mnist-fc", "--format", "json", "--database-url", url, *extra]
    assert analyze_study(argv) == 0
    return {r["defense"]: r for r in json.loads(capsys.readouterr().out)["results"]}


def test_an_experiment_on_mturk_excludes_across_studies_and_applies_the_attention_policy(
    database_url, make_bundle, aws_env, live_server_factory, capsys, monkeypatch
):
    fake, url = aws_env, database_url
    ours = make_bundle(n_adversarial=20, n_catch=4, defense="ours")
    at = make_bundle(n_adversarial=20, n_catch=4, defense="at", seed=1)
    import_study(url, ours, items_per_assignment=5)  # 4 assignments of 5 + 1 catch trial
    import_study(url, at, items_per_assignment=5)
    group = ["experiment", "create", "mnist-fc", "--study", "ours-fc", "--study", "at-fc"]
    assert study_server([*group, "--database-url", url]) == 0
    assert "studies at-fc, ours-fc" in capsys.readouterr().out
    server = live_server_factory(make_settings(url, turk_submit_hosts=[fake.url]))
    settings = cli_settings(url, fake)
    for slug in ("ours-fc", "at-fc"):
        assert mturk(["publish", "--study", slug, "--url", server.url], settings) == 0
    out = capsys.readouterr().out
    assert out.count("exclusion: workers holding 'advcritic experiment mnist-fc ") == 2
    ours_hits, at_hits = _hits(url, "ours-fc"), _hits(url, "at-fc")

    with server.client() as web:
        done = {
            worker: do_hit(
                fake, web, hit_id=ours_hits[i], worker_id=worker, by_image=records_by_image(ours),
                choose=choose,
            )
            for i, (worker, choose) in enumerate(
                [("AWORKER0", careful), ("AWORKER1", careful), ("ACARELESS", careless)]
            )
        }  # fmt: skip
    assert _attention(url) == {
        "AWORKER0": AttentionOutcome.passed,
        "AWORKER1": AttentionOutcome.passed,
        "ACARELESS": AttentionOutcome.failed_attention,
    }
    assert mturk(["sync", "--study", "ours-fc"], settings) == 0
    out = capsys.readouterr().out
    assert "confirmed: 3, flagged: 0" in out and "granted to 3 new worker(s)" in out

    # A worker of the first study is excluded from the second: on MTurk...
    with fake.worker_site() as site:
        refused = site.post("/_worker/accept", json={"hitId": at_hits[0], "workerId": "AWORKER0"})
    assert refused.status_code == 403 and "qualification" in refused.json()["error"]
    # ...and by the server, whatever URL they type.
    with server.client() as web:
        sneaked = web.post(
            "/api/studies/at-fc/accept",
            json={
                "worker_id": "AWORKER0",
                "mturk": {
                    "assignment_id": "AFORGED",
                    "hit_id": at_hits[0],
                    "turk_submit_to": fake.url,
                },
                "consent_sha256": consent_sha256(web, "at-fc"),
            },
        )
        assert sneaked.status_code == 409
        assert "another study of this experiment" in sneaked.json()["detail"]
        at_done = [
            do_hit(
                fake, web, hit_id=at_hits[i], worker_id=worker, by_image=records_by_image(at),
                choose=choose,
            )
            for i, (worker, choose) in enumerate([("AWORKER3", careful), ("ACARELESS4", careless)])
        ]  # fmt: skip
    assert mturk(["sync", "--study", "at-fc"], settings) == 0
    with fake.worker_site() as site:  # and the second study's workers from the first
        refused = site.post("/_worker/accept", json={"hitId": ours_hits[3], "workerId": "AWORKER3"})
    assert refused.status_code == 403

    # Table 2 for the whole experiment: the careless worker is out, listed with the numbers.
    table = _table(capsys, url)
    assert set(table) == {"ours", "at"}
    assert (table["ours"]["annotators"], table["at"]["annotators"]) == (2, 1)
    (failure,) = table["ours"]["attention_failures"]
    assert failure["worker_id"] == "ACARELESS" and failure["labels"] == 6
    assert "0 of 1 catch trial(s) right (0%; the policy asks for at least 50%)" in failure["why"]
    assert table["ours"]["excluded"] == {
        "from submissions that failed the study's attention policy (listed below)": 6
    }
    assert _table(capsys, url, "--include-failed-attention")["ours"]["annotators"] == 3

    # Review: proposals from the policy; nothing happens without a confirmation.
    capsys.readouterr()
    assert mturk(["review", "--study", "ours-fc"], settings) == 2
    captured = capsys.readouterr()
    assert "rerun with --yes" in captured.err
    assert f"approve {done['ACARELESS'].assignment_id}  ACARELESS  [not counted] failed" in (
        captured.out
    )
    assert (
        fake.fake.handle("GetAssignment", {"AssignmentId": done["ACARELESS"].assignment_id})[
            "Assignment"
        ]["AssignmentStatus"]
        == "Submitted"
    )
    assert mturk(["review", "--study", "ours-fc", "--yes"], settings) == 0
    assert "approved 3 assignment(s)" in capsys.readouterr().out
    # Rejecting for failed attention is the requester's explicit choice, with a reason.
    reason = ["--reason", "The instructions said some images check attention."]
    argv = ["review", "--study", "at-fc", "--reject-failed-attention", *reason, "--yes"]
    assert mturk(argv, settings) == 0
    out = capsys.readouterr().out
    assert "approved 1 assignment(s)" in out and "rejected 1 assignment(s)" in out
    rejected = fake.fake.handle("GetAssignment", {"AssignmentId": at_done[1].assignment_id})
    assert rejected["Assignment"]["AssignmentStatus"] == "Rejected"
    assert "0 of 1 catch trial(s) right" in rejected["Assignment"]["RequesterFeedback"]

    # A bonus for everyone who passed, interrupted after its first payment, then run again.
    real = bonus_module._record_paid

    def crash_after_the_first_payment(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bonus_module, "_record_paid", crash_after_the_first_payment)
    argv = ["bonus", "--study", "ours-fc", "--passed-attention", "--purpose", "attention", *BONUS]
    assert mturk(argv, settings) == 130
    assert "not passed the attention policy: failed_attention 1" in capsys.readouterr().out
    assert len(fake.fake.bonuses()) == 1
    monkeypatch.setattr(bonus_module, "_record_paid", real)
    assert mturk(argv, settings) == 0
    assert "paid 1 bonus(es), found 1 paid by an earlier run" in capsys.readouterr().out
    assert sorted(b.worker_id for b in fake.fake.bonuses()) == ["AWORKER0", "AWORKER1"]
    assert mturk(argv, settings) == 0  # a third run pays nobody
    assert sorted(b.worker_id for b in fake.fake.bonuses()) == ["AWORKER0", "AWORKER1"]
