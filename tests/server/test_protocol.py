"""The human-subjects protocol on the server: consent before anything is allocated (the accept
requires the SHA-256 of the current text), declining stores only the refusal, the texts are
versioned and sanitized, the attention policy is judged at submit and re-judged when it
changes, and the studies of an experiment share one pool of people (MTurk ids, lab codes)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from study_server.attention import PolicySpec, judge
from study_server.cli import main as study_server
from study_server.db.models import (
    Allocation,
    AttentionOutcome,
    Event,
    ProtocolText,
    TextKind,
    Worker,
)
from study_server.protocol_texts import default_text, render
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import attach_texts, import_study, invite, make_experiment, register_hits
from tests.server.flow import consent_sha256, lab_accept, mturk_accept, submit


def _count(url: str, table) -> int:
    session = session_for(url)
    try:
        return session.scalar(select(func.count()).select_from(table))
    finally:
        session.close()


def _events(url: str, kind: str) -> list[Event]:
    session = session_for(url)
    try:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))
    finally:
        session.close()


# -- texts ---------------------------------------------------------------------------------


def test_texts_are_rendered_and_sanitized_and_their_digest_is_of_what_people_see():
    text = render(
        "# Hello\n\n<script>alert(1)</script><img src=x onerror=alert(2)>"
        '<a href="javascript:alert(3)">x</a>\n\nA [site](https://example.org).\n\n'
        "<form><input></form><style>p{}</style><iframe src=//evil></iframe>\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "markdown",
    )
    assert "<h1>Hello</h1>" in text.html and "<table>" in text.html
    for gone in ("script", "alert", "onerror", "<img", "javascript", "<form", "<style", "iframe"):
        assert gone not in text.html
    assert '<a href="https://example.org" target="_blank" rel="noopener noreferrer">' in text.html
    import hashlib

    assert text.sha256 == hashlib.sha256(text.html.encode()).hexdigest()
    assert text.placeholders == 0
    consent = default_text(TextKind.consent)
    assert consent.placeholders >= 9  # every IRB field a placeholder
    for field in ("Who runs", "for", "How long", "Pay", "Risks", "voluntary", "data", "Contact"):
        assert field in consent.source


def test_attaching_makes_a_new_version_and_the_same_text_none(
    sqlite_database_url, small_bundle, tmp_path, capsys
):
    url = sqlite_database_url
    import_study(url, small_bundle, items_per_assignment=5)
    text = tmp_path / "consent.html"
    text.write_text("<h1>Consent</h1><p>Our words.</p><script>x()</script>", encoding="utf-8")
    argv = ["protocol", "attach", "ours-fc", "--consent", str(text), "--database-url", url]
    assert study_server(argv) == 0
    assert "ours-fc: consent version 2, sha256 " in capsys.readouterr().out
    assert study_server(argv) == 0
    assert "consent unchanged (version 2)" in capsys.readouterr().out
    session = session_for(url)
    try:
        rows = session.scalars(select(ProtocolText).order_by(ProtocolText.id)).all()
        assert [(r.kind, r.version) for r in rows] == [
            (TextKind.consent, 1),
            (TextKind.debrief, 1),
            (TextKind.consent, 2),
        ]
        assert rows[-1].html == "<h1>Consent</h1><p>Our words.</p>\n"
        assert rows[-1].source_name == str(text)
    finally:
        session.close()
    for bad, message in (
        ("consent.pdf", "name a Markdown (.md) or HTML (.html) file"),
        ("missing.md", "No such file"),
    ):
        if bad.endswith(".pdf"):
            (tmp_path / bad).write_bytes(b"%PDF")
        argv = ["protocol", "attach", "ours-fc", "--consent", str(tmp_path / bad)]
        assert study_server([*argv, "--database-url", url]) == 2
        assert message in capsys.readouterr().err
    assert study_server(["protocol", "show", "ours-fc", "--database-url", url]) == 0
    shown = capsys.readouterr().out
    assert "consent v2 (current)" in shown and "debrief v1 (current)" in shown
    assert "5 [EDIT: ...] placeholder(s) left" in shown  # the default debrief


# -- consent before anything ---------------------------------------------------------------


def test_the_accept_requires_the_current_consent_texts_digest(
    database_url, study, live_server, tmp_path
):
    with live_server.client() as client:
        old = consent_sha256(client, study.slug)
        body = {
            "worker_id": "W1",
            "mturk": {"assignment_id": "A1", "hit_id": "HIT0", "turk_submit_to": "https://www.mturk.com"},
        }  # fmt: skip
        missing = client.post(f"/api/studies/{study.slug}/accept", json=body)
        made_up = client.post(
            f"/api/studies/{study.slug}/accept", json={**body, "consent_sha256": "ab" * 32}
        )
        assert missing.status_code == 422 and "consent_sha256" in missing.text
        assert (
            made_up.status_code == 409
            and "a consent text this study does not have" in (made_up.json()["detail"])
        )
        new = tmp_path / "consent.md"
        new.write_text("# Consent v2\n\nThe lab's words.\n", encoding="utf-8")
        attach_texts(database_url, study.slug, consent=new)
        stale = mturk_accept(client, study.slug, worker="W1", assignment="A1", consent=old)
        assert stale.status_code == 409
        assert (
            "version 1 of the consent text, which was replaced by version 2"
            in (stale.json()["detail"])
        )
        assert _count(database_url, Allocation) == 0 and _count(database_url, Worker) == 0
        current = consent_sha256(client, study.slug)
        assert mturk_accept(client, study.slug, worker="W1", assignment="A1").status_code == 200
    session = session_for(database_url)
    try:
        allocation = session.scalar(select(Allocation))
        assert allocation.consent_sha256 == current and allocation.consented_at is not None
        text = session.get(ProtocolText, allocation.consent_text_id)
        assert (text.kind, text.version) == (TextKind.consent, 2)
    finally:
        session.close()


MTURK = "https://www.mturk.com"
CONFIG = re.compile(r'<script type="application/json" id="config">(.*?)</script>', re.DOTALL)


def _page_consent(client, slug: str) -> str:
    page = client.get(
        f"/hit/{slug}",
        params={"assignmentId": "A1", "hitId": "HIT0", "workerId": "W1", "turkSubmitTo": MTURK},
    )
    assert page.status_code == 200, page.text
    return json.loads(CONFIG.search(page.text).group(1))["consentSha256"]


def test_an_accept_refused_for_a_replaced_consent_text_refreshes_the_page_at_once(
    database_url, study, live_server_factory, tmp_path
):
    """The HIT page keeps its study data for a while; an accept refused because the consent
    text changed must make it serve the new text now. On PostgreSQL that refusal comes from
    a database process, so its cause has to cross."""
    server = live_server_factory(make_settings(database_url, db_processes=1))
    with server.client() as client:
        old = _page_consent(client, study.slug)
        new_text = tmp_path / "consent.md"
        new_text.write_text("# Consent v2\n\nThe lab's words.\n", encoding="utf-8")
        attach_texts(database_url, study.slug, consent=new_text)
        assert _page_consent(client, study.slug) == old  # still the page's kept copy
        stale = mturk_accept(client, study.slug, worker="W1", assignment="A1", consent=old)
        assert stale.status_code == 409 and "replaced by version 2" in stale.json()["detail"]
        current = _page_consent(client, study.slug)
        assert current != old
        accepted = mturk_accept(client, study.slug, worker="W1", assignment="A1", consent=current)
        assert accepted.status_code == 200, accepted.text


def test_declining_stores_the_refusal_and_nothing_about_the_person(
    database_url, study, live_server
):
    with live_server.client() as client:
        sha = consent_sha256(client, study.slug)
        answer = client.post(
            f"/api/studies/{study.slug}/decline", json={"consent_sha256": sha, "source": "mturk"}
        )
        assert answer.json() == {"status": "declined"}
        assert (
            client.post(
                f"/api/studies/{study.slug}/decline", json={"consent_sha256": sha, "source": "me"}
            ).status_code
            == 422
        )
        assert (
            client.post(
                "/api/studies/no-such/decline", json={"consent_sha256": sha, "source": "local"}
            ).status_code
            == 404
        )
    (declined,) = _events(database_url, "consent_declined")
    assert declined.worker_external_id is None and declined.assignment_id is None
    assert declined.detail == {
        "source": "mturk",
        "consent_sha256": sha,
        "current_version": 1,
        "was_current": True,
    }
    assert _count(database_url, Allocation) == 0 and _count(database_url, Worker) == 0


# -- attention -----------------------------------------------------------------------------


def test_the_policy_judges_catch_trials_and_response_times():
    spec = PolicySpec(min_catch_accuracy=0.5, min_median_response_ms=400)
    passed = judge(spec, catch_right=[True, False], response_ms=[500, 900, 300])
    assert (passed.outcome, passed.median_response_ms) == (AttentionOutcome.passed, 500.0)
    failed = judge(spec, catch_right=[False, False], response_ms=[100, 200, 300])
    assert failed.outcome == AttentionOutcome.failed_attention
    assert failed.reasons == (
        "0 of 2 catch trial(s) right (0%; the policy asks for at least 50%)",
        "median response time 200 ms (the policy asks for at least 400 ms)",
    )
    nothing = judge(PolicySpec(0.5, None), catch_right=[], response_ms=[100])
    assert nothing.outcome == AttentionOutcome.not_applicable  # no catch trial: not judged
    untimed = judge(spec, catch_right=[True], response_ms=[None, None])
    assert untimed.outcome == AttentionOutcome.passed and untimed.median_response_ms is None
    assert judge(PolicySpec(None, None), catch_right=[False], response_ms=[1]).outcome == (
        AttentionOutcome.not_applicable
    )


def test_a_submission_is_judged_when_stored_and_again_when_the_policy_changes(
    sqlite_database_url, make_bundle, live_server_factory, capsys
):
    from contract.bundle import read_bundle
    from testkit.servers import make_settings

    url = sqlite_database_url
    bundle = make_bundle(n_adversarial=10, n_catch=2)
    import_study(url, bundle, items_per_assignment=5)  # 2 assignments of 5 + 1 catch trial
    truth = {r.image_sha256: r for r in read_bundle(bundle).records}
    codes = invite(url, "ours-fc", 2)
    server = live_server_factory(make_settings(url))
    import hashlib

    with server.client() as client:
        for code, right in zip(codes, (True, False), strict=True):
            accepted = lab_accept(client, "ours-fc", code=code).json()
            shown = [
                truth[hashlib.sha256(client.get(u).content).hexdigest()]
                for u in accepted["item_urls"]
            ]
            labels = [
                (r.original_label if right else (r.original_label + 1) % 10)
                if r.kind == "catch"
                else 0
                for r in shown
            ]
            assert submit(client, accepted, code=code, labels=labels).status_code == 200
    outcomes = _outcomes(url)
    assert sorted(o for o, _ in outcomes) == ["failed_attention", "passed"]
    assert all(detail["policy_version"] == 1 for _, detail in outcomes)
    # The flow helper sends 800 ms per label: a 1-second minimum fails both; "none" lifts it.
    argv = ["protocol", "attention", "ours-fc", "--min-median-response-ms", "1000"]
    assert study_server([*argv, "--note", "after the pilot", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "attention policy v2: catch accuracy >= 50%, median response time >= 1000 ms" in out
    assert "failed_attention 2 (passed -> failed_attention: 1)" in out
    argv = ["protocol", "attention", "ours-fc", "--min-catch-accuracy", "none"]
    assert study_server([*argv, "--min-median-response-ms", "none", "--database-url", url]) == 0
    assert "not_applicable 2" in capsys.readouterr().out
    assert [e.detail["policy_version"] for e in _events(url, "attention_reevaluated")] == [2, 3]
    assert (
        study_server(
            ["protocol", "attention", "ours-fc", "--min-catch-accuracy", "2", "--database-url", url]
        )
        == 2
    )
    assert "a share from 0 to 1" in capsys.readouterr().err


def _outcomes(url: str) -> list[tuple[str, dict]]:
    session = session_for(url)
    try:
        return [
            (a.attention.value, a.attention_detail)
            for a in session.scalars(select(Allocation).order_by(Allocation.id))
        ]
    finally:
        session.close()


# -- experiments ---------------------------------------------------------------------------


def test_a_person_takes_part_in_one_study_of_an_experiment_whatever_the_source(
    database_url, make_bundle, live_server_factory
):
    from testkit.servers import make_settings

    url = database_url
    for defense, seed in (("ours", 0), ("at", 1)):
        import_study(url, make_bundle(n_adversarial=10, defense=defense, seed=seed))
        register_hits(url, f"{defense}-fc", [f"HIT-{defense}"])
    make_experiment(url, "mnist-fc", ["ours-fc", "at-fc"])
    (code,) = invite(url, "ours-fc")  # minted for the experiment: one person across it
    server = live_server_factory(make_settings(url))
    with server.client() as client:
        took = mturk_accept(client, "ours-fc", worker="W1", assignment="A1", hit="HIT-ours")
        assert took.status_code == 200
        again = mturk_accept(client, "at-fc", worker="W1", assignment="A2", hit="HIT-at")
        assert again.status_code == 409
        assert "another study of this experiment" in again.json()["detail"]
        other = mturk_accept(client, "at-fc", worker="W2", assignment="A3", hit="HIT-at")
        assert other.status_code == 200
        lab = lab_accept(client, "at-fc", code=code)  # the link said ours-fc; any one study
        assert lab.status_code == 200
        assert lab_accept(client, "ours-fc", code=code).status_code == 409
        assert submit(client, lab.json(), code=code, labels=[1] * 5).status_code == 200
        spent = client.get("/lab/ours-fc", params={"code": code})
        assert spent.status_code == 409 and "already been used" in spent.text
    refused = [e for e in _events(url, "refused") if e.detail.get("status") == 409]
    assert len(refused) == 3  # two accepts and the spent code's page


def test_studies_with_a_shared_participant_cannot_form_an_experiment(
    sqlite_database_url, make_bundle, live_server_factory, capsys
):
    from testkit.servers import make_settings

    url = sqlite_database_url
    for defense, seed in (("ours", 0), ("at", 1), ("vat", 2)):
        import_study(url, make_bundle(n_adversarial=10, defense=defense, seed=seed))
        register_hits(url, f"{defense}-fc", [f"HIT-{defense}"])
    server = live_server_factory(make_settings(url))
    with server.client() as client:
        for slug, hit in (("ours-fc", "HIT-ours"), ("at-fc", "HIT-at")):
            assert (
                mturk_accept(client, slug, worker="W1", assignment=f"A-{slug}", hit=hit).status_code
                == 200
            )
    db = ["--database-url", url]
    create = ["experiment", "create", "mnist-fc", "--study", "ours-fc", "--study", "at-fc", *db]
    assert study_server(create) == 2
    assert "1 person(s) already took part in two of these studies (mturk:W1)" in (
        capsys.readouterr().err
    )
    assert study_server(["experiment", "create", "mnist-fc", "--study", "ours-fc", *db]) == 0
    assert study_server(["experiment", "create", "other", "--study", "ours-fc", *db]) == 2
    assert "study 'ours-fc' is in experiment 'mnist-fc'" in capsys.readouterr().err
    assert study_server(["experiment", "add", "mnist-fc", "--study", "vat-fc", *db]) == 0
    assert "joined now: vat-fc" in capsys.readouterr().out
    assert study_server(["experiment", "add", "nope", "--study", "vat-fc", *db]) == 2
    assert "no experiment 'nope' in the database (experiments: mnist-fc)" in capsys.readouterr().err
    assert study_server(["experiment", "list", *db]) == 0
    assert capsys.readouterr().out == "mnist-fc: ours-fc (ours/fc), vat-fc (vat/fc)\n"


def test_import_sets_the_protocol_and_the_experiment(
    sqlite_database_url, make_bundle, tmp_path, capsys
):
    url = sqlite_database_url
    db = ["--database-url", url]
    consent = tmp_path / "consent.md"
    consent.write_text("# Consent\n\nThe lab's words.\n", encoding="utf-8")
    ours, at = (
        make_bundle(n_adversarial=10, n_catch=2),
        make_bundle(n_adversarial=10, defense="at", seed=1),
    )
    assert study_server(["experiment", "create", "mnist-fc", *db]) == 0
    argv = ["import", str(ours), "--consent", str(consent), "--min-catch-accuracy", "1"]
    assert study_server([*argv, "--experiment", "mnist-fc", *db]) == 0
    out = capsys.readouterr().out
    assert f"consent {consent}, debrief built-in default (edit it)" in out
    assert "attention policy: catch accuracy >= 100%" in out and "experiment: mnist-fc" in out
    assert study_server([*argv, *db]) == 2  # the texts and policy of a study change elsewhere
    assert "change its texts or policy with `study-server protocol attach|attention ours-fc`" in (
        capsys.readouterr().err
    )
    assert study_server(["import", str(at), *db]) == 0
    assert study_server(["import", str(at), "--experiment", "mnist-fc", *db]) == 0
    assert "it joined experiment 'mnist-fc'" in capsys.readouterr().out
    assert study_server(["import", str(at), "--experiment", "nope", *db]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert study_server(["protocol", "show", "ours-fc", *db]) == 0
    shown = capsys.readouterr().out
    assert (
        "experiment: mnist-fc" in shown
        and "attention policy v1 (current): catch accuracy >= 100% (import" in shown
    )
    with pytest.raises(SystemExit) as refused:  # argparse's own exit status 2
        study_server(["import", str(ours), "--min-catch-accuracy", "lots", *db])
    assert refused.value.code == 2
    assert "must be a share like 0.8 or 'none', got 'lots'" in capsys.readouterr().err
