"""k labels per image (`study-server import --labels-per-image K`): K replicas of the layout,
every image labeled by K different people whatever the source, end to end to the analysis."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pytest
from sqlalchemy import select

from analysis.cli import main as analyze_study
from contract.bundle import read_bundle
from study_server.cli import main as study_server
from study_server.db.models import Assignment, AssignmentItem, Stimulus, Study
from study_server.export import label_rows
from study_server.split import replicate, split_into_assignments
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import import_study, invite, register_hits
from tests.fixtures.prolific import participant, prolific_accept, register_prolific_study
from tests.server.flow import lab_accept, mturk_accept, submit

K = 3


def test_replicas_keep_the_groups_and_reorder_them():
    groups = split_into_assignments(
        [f"adv-{i}" for i in range(50)], items_per_assignment=10, seed=3
    )
    copies = replicate(groups, replicas=K, seed=3)
    assert copies[0] == groups  # k = 1 is the layout of before
    for copy in copies[1:]:
        assert [sorted(g) for g in copy] == [sorted(g) for g in groups]
    assert copies[1] != groups and copies[2] != copies[1]  # each replica its own order
    assert replicate(groups, replicas=K, seed=3) == copies  # reproducible
    with pytest.raises(ValueError, match="at least 1, got 0"):
        replicate(groups, replicas=0, seed=3)


def test_import_makes_k_replicas_each_holding_every_image_once(database_url, small_bundle):
    result = import_study(database_url, small_bundle, items_per_assignment=5, labels_per_image=K)
    assert (result.assignments, result.labels_per_image) == (3 * K, K)
    session = session_for(database_url)
    try:
        study = session.scalars(select(Study)).one()
        assert study.labels_per_image == K
        rows = session.execute(
            select(Assignment.replica, Assignment.ordinal, AssignmentItem.replica, Stimulus.id)
            .join(AssignmentItem, AssignmentItem.assignment_id == Assignment.id)
            .join(Stimulus, Stimulus.id == AssignmentItem.stimulus_id)
        ).all()
    finally:
        session.close()
    per_replica: dict[int, list[int]] = defaultdict(list)
    for replica, ordinal, item_replica, stimulus in rows:
        assert replica == item_replica and ordinal // 3 == replica  # replica-major ordinals
        per_replica[replica].append(stimulus)
    assert sorted(per_replica) == list(range(K))
    for stimuli in per_replica.values():
        assert len(stimuli) == len(set(stimuli)) == 15


def test_a_bad_labels_per_image_is_exit_2_naming_it(sqlite_database_url, small_bundle, capsys):
    base = ["import", str(small_bundle), "--database-url", sqlite_database_url]
    assert study_server([*base, "--labels-per-image", "0"]) == 2
    assert "--labels-per-image must be a whole number >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as parsed:  # argparse's own exit status 2
        study_server([*base, "--labels-per-image", "two"])
    assert parsed.value.code == 2
    assert "--labels-per-image: invalid int value: 'two'" in capsys.readouterr().err
    assert study_server([*base, "--labels-per-image", "3", "--items-per-assignment", "5"]) == 0
    out = capsys.readouterr().out
    assert "15 stimuli in 9 assignments (3 labels per image, each from a different person" in out
    assert study_server([*base, "--labels-per-image", "2"]) == 2  # cannot change it
    assert "imported already with 3 label(s) per image" in capsys.readouterr().err
    assert study_server(base) == 0  # without the option, a re-import keeps the study's K
    assert "already imported as study 'ours-fc' (9 assignments)" in capsys.readouterr().out


def _answer(record, person: int) -> int:
    """Person n changes their mind on some images: the labels are not all alike."""
    if (record.source_index + person) % 3 == 0:
        return record.original_label
    return int(record.target)


def test_three_people_label_every_image_a_fourth_gets_nothing_then_kappa(
    database_url, make_bundle, live_server_factory, capsys
):
    bundle = make_bundle(n_adversarial=8)
    by_image = {r.image_sha256: r for r in read_bundle(bundle).records}
    import_study(database_url, bundle, items_per_assignment=8, labels_per_image=K)
    codes = invite(database_url, "ours-fc", n=K + 1)
    server = live_server_factory(make_settings(database_url))
    with server.client() as web:
        for person, code in enumerate(codes[:K]):
            accepted = lab_accept(web, "ours-fc", code=code)
            assert accepted.status_code == 200, accepted.text
            body = accepted.json()
            shown = [
                by_image[hashlib.sha256(web.get(u).content).hexdigest()] for u in body["item_urls"]
            ]
            labels = [_answer(record, person) for record in shown]
            assert submit(web, body, labels=labels, code=code).status_code == 200
        fourth = lab_accept(web, "ours-fc", code=codes[K])
        assert fourth.status_code == 409 and "taken or done" in fourth.json()["detail"]
        again = lab_accept(web, "ours-fc", code=codes[0])
        assert again.status_code == 409 and "already been used" in again.json()["detail"]
    session = session_for(database_url)
    try:
        _, rows = label_rows(session=session, study_slug="ours-fc")
    finally:
        session.close()
    workers = defaultdict(set)
    for row in rows:
        workers[row["stimulus_id"]].add(row["worker_id"])
    assert len(workers) == 8 and all(len(who) == K for who in workers.values())
    assert len(rows) == 8 * K
    status = analyze_study(["--study", "ours-fc", "--database-url", database_url])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "per image (majority)" in out
    assert "Fleiss' kappa = " in out and "over 8 images with 3 labels each" in out


@pytest.mark.parametrize("source", ["mturk", "prolific"])
def test_a_market_worker_gets_one_assignment_of_the_k_replicas(
    database_url, small_bundle, live_server_factory, source
):
    """One allocation per person and study holds on every market: a second accept of the
    same person (another HIT, or on Prolific the same session) is no new assignment."""
    import_study(database_url, small_bundle, items_per_assignment=5, labels_per_image=K)
    register_hits(database_url, "ours-fc", ["HIT0", "HIT1"])
    register_prolific_study(database_url, "ours-fc", prolific_study_id="6650" + "a" * 20)
    ids = {
        "participant_id": participant(1),
        "study_id": "6650" + "a" * 20,
        "session_id": "6650" + "b" * 20,
    }
    server = live_server_factory(make_settings(database_url))
    with server.client() as web:
        if source == "mturk":
            first = mturk_accept(web, "ours-fc", worker="W1", assignment="A1", hit="HIT0")
            body = first.json()
            done = submit(web, body, labels=[1] * 5, worker="W1", mturk_assignment="A1")
            second = mturk_accept(web, "ours-fc", worker="W1", assignment="A2", hit="HIT1")
        else:
            first = prolific_accept(web, "ours-fc", ids)
            body = first.json()
            done = web.post(
                body["submit_url"],
                json={**ids, "labels": [{"position": p, "label": 1} for p in range(5)]},
            )
            second = prolific_accept(web, "ours-fc", ids)
        assert first.status_code == 200 and done.status_code == 200, done.text
        if source == "mturk":
            assert second.status_code == 409
            assert "already completed an assignment" in second.json()["detail"]
        else:  # the same session again: the hand-off, never a second assignment
            assert second.status_code == 200
            assert second.json()["assignment"] == body["assignment"]
            assert second.json()["outcome"] == "submitted"
    session = session_for(database_url)
    try:
        _, rows = label_rows(session=session, study_slug="ours-fc")
    finally:
        session.close()
    assert len(rows) == 5 and len({row["worker_id"] for row in rows}) == 1
