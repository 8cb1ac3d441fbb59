"""`study-server experiment layout E --interleaved`, end to end: three bundles of one
experiment become one study whose assignments mix the defenses (nobody sees a digit twice,
the defenses balanced), people label it through the API, the export gives each label its
defense, and analyze-study compares the defenses within subjects."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from sqlalchemy import select

from analysis.cli import main as analyze_study
from contract.bundle import read_bundle
from study_server.cli import main as study_server
from study_server.db.models import Assignment, AssignmentItem, Stimulus, Study
from study_server.export import label_rows
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study, invite, make_experiment
from tests.server.flow import lab_accept, submit

SLUG = "mnist-fc-interleaved"
# How often the simulated people say the attack's target, per defense (else the original).
CHANGE = {"ours": 5, "at": 2, "vat": 1}  # out of 6


@pytest.fixture
def experiment(database_url, make_bundle):
    """Three defenses of the same 12 source digits (and 3 catch trials each)."""
    make_experiment(database_url, "mnist-fc", [])
    records = {}
    for defense, seed in (("ours", 1), ("at", 2), ("vat", 3)):
        bundle = make_bundle(n_adversarial=12, n_catch=3, defense=defense, seed=seed)
        import_study(database_url, bundle, items_per_assignment=6, experiment="mnist-fc")
        records.update({(r.image_sha256): (defense, r) for r in read_bundle(bundle).records})
    return records


def _lay_out(url: str, *extra: str) -> int:
    argv = ["experiment", "layout", "mnist-fc", "--interleaved", "--seed", "3"]
    return study_server([*argv, "--items-per-assignment", "6", *extra, "--database-url", url])


def test_the_layout_is_a_latin_square_and_idempotent(database_url, experiment, capsys):
    assert _lay_out(database_url) == 0
    out = capsys.readouterr().out
    assert (
        f"laid out study '{SLUG}' of experiment 'mnist-fc': 39 stimuli of at, ours, vat in 6 "
        "interleaved assignments (Latin square over 12 source digits)"
    ) in out
    session = session_for(database_url)
    try:
        study = session.scalars(select(Study).where(Study.slug == SLUG)).one()
        assert study.experiment.slug == "mnist-fc" and study.defense == "interleaved"
        items = session.execute(
            select(Assignment.ordinal, Stimulus.defense, Stimulus.kind, Stimulus.source_index)
            .join(AssignmentItem, AssignmentItem.assignment_id == Assignment.id)
            .join(Stimulus, Stimulus.id == AssignmentItem.stimulus_id)
            .where(Assignment.study_id == study.id)
        ).all()
    finally:
        session.close()
    by_assignment: dict[int, list] = {}
    for ordinal, defense, kind, digit in items:
        by_assignment.setdefault(ordinal, []).append((defense, kind.value, digit))
    assert len(by_assignment) == 6
    shown = Counter()
    for rows in by_assignment.values():
        digits = [digit for _, _, digit in rows]
        assert len(digits) == len(set(digits))
        defenses = Counter(d for d, kind, _ in rows if kind == "adversarial")
        assert defenses == {"at": 2, "ours": 2, "vat": 2}
        shown.update((d, digit) for d, kind, digit in rows if kind == "adversarial")
    assert len(shown) == 36 and set(shown.values()) == {1}  # each (defense, digit) once
    assert _lay_out(database_url) == 0  # again: found, nothing changed
    assert "already laid out as study" in capsys.readouterr().out
    assert study_server(["experiment", "layout", "mnist-fc", "--database-url", database_url]) == 2
    assert "needs --interleaved" in capsys.readouterr().err
    plan = ["plan", "--study", SLUG, "--change-rate", "0.5", "--database-url", database_url]
    assert analyze_study(plan) == 2
    assert f"--study '{SLUG}' is interleaved (stimuli of at, ours, vat)" in capsys.readouterr().err


def test_people_label_the_interleaved_study_and_the_analysis_is_within_subject(
    database_url, experiment, live_server_factory, capsys
):
    assert _lay_out(database_url, "--labels-per-image", "2") == 0
    capsys.readouterr()
    codes = invite(database_url, SLUG, n=13)
    server = live_server_factory(make_settings(database_url))
    with server.client() as web:
        for person, code in enumerate(codes[:12]):
            body = lab_accept(web, SLUG, code=code).json()
            labels = []
            for url in body["item_urls"]:
                defense, record = experiment[hashlib.sha256(web.get(url).content).hexdigest()]
                if record.kind == "catch":
                    labels.append(record.original_label)
                elif (record.source_index + person) % 6 < CHANGE[defense]:
                    labels.append(record.target)
                else:
                    labels.append(record.original_label)
            assert submit(web, body, labels=labels, code=code).status_code == 200
        late = lab_accept(web, SLUG, code=codes[12])
        assert late.status_code == 409  # 2 replicas x 6 assignments: all done
        (other,) = invite(database_url, "ours-fc")  # a person of a per-defense study
        first = lab_accept(web, "ours-fc", code=other).json()
        assert submit(web, first, labels=[0] * first["num_items"], code=other).status_code == 200
        refused = lab_accept(web, SLUG, code=other)
        assert refused.status_code == 409  # never both studies of the experiment
        assert "another study of this experiment" in refused.json()["detail"]
    session = session_for(database_url)
    try:
        _, rows = label_rows(session=session, study_slug=SLUG)
    finally:
        session.close()
    adversarial = [row for row in rows if row["kind"] == "adversarial"]
    assert Counter(row["defense"] for row in adversarial) == {"at": 24, "ours": 24, "vat": 24}
    per_image = Counter(row["stimulus_id"] for row in adversarial)
    assert len(per_image) == 36 and set(per_image.values()) == {2}  # k = 2, each image twice
    status = analyze_study(
        ["--study", SLUG, "--database-url", database_url, "--format", "json", "--resamples", "199"]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    rows = {row["defense"]: row for row in report["results"]}
    assert set(rows) == {"at", "ours", "vat"}
    assert all(row["annotators"] == 12 for row in rows.values())
    comparisons = [c for c in report["comparisons"] if c["outcome"] == "change"]
    assert {c["baseline"] for c in comparisons} == {"at", "vat"}
    assert all(c["design"] == "within-subject" for c in comparisons)
    assert analyze_study(["--experiment", "mnist-fc", "--database-url", database_url]) == 0
    table = capsys.readouterr().out
    assert "within-subject" in table
