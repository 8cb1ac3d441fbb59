"""`study-server import`: a verified bundle becomes a study once; a bad bundle changes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from contract.bundle import BundleError, read_bundle
from study_server.cli import main
from study_server.db.models import Assignment, AssignmentItem, Event, Stimulus, Study
from study_server.errors import ImportRefused
from testkit.databases import session_for
from testkit.studies import import_study


def _counts(url: str) -> tuple[int, int, int, int]:
    session = session_for(url)
    try:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Study, Stimulus, Assignment, AssignmentItem)
        )
    finally:
        session.close()


def test_import_makes_the_study_with_manifest_fields_and_split(database_url, make_bundle):
    bundle_path = make_bundle(n_adversarial=23, n_catch=3)
    result = import_study(database_url, bundle_path, items_per_assignment=5)
    assert (result.created, result.slug, result.stimuli, result.assignments) == (
        True,
        "ours-fc",
        26,
        5,
    )
    bundle = read_bundle(bundle_path)
    session = session_for(database_url)
    try:
        study = session.scalar(select(Study))
        assert (study.defense, study.network, study.bundle_version) == ("ours", "fc", 1)
        assert study.manifest_sha256 == bundle.manifest_sha256
        stored = {s.stimulus_key: s for s in session.scalars(select(Stimulus))}
        for record in bundle.records:
            row = stored[record.stimulus_id]
            assert (row.kind.value, row.original_label, row.target, row.prediction_adversarial) == (
                record.kind,
                record.original_label,
                record.target,
                record.prediction_adversarial,
            )
            assert row.image_png == bundle.image_bytes(record)
        sizes = [len(a.items) for a in study.assignments]
        assert sorted(sizes) == [
            4,
            4,
            6,
            6,
            6,
        ]  # 23 -> 5,5,5,4,4; 3 catch trials dealt onto the first three
        assert (
            session.scalar(
                select(func.count()).select_from(Event).where(Event.kind == "study_imported")
            )
            == 1
        )
    finally:
        session.close()


def test_importing_twice_does_not_duplicate(database_url, make_bundle):
    bundle_path = make_bundle(n_adversarial=10)
    import_study(database_url, bundle_path)
    before = _counts(database_url)
    again = import_study(database_url, bundle_path)
    assert again.created is False
    assert _counts(database_url) == before == (1, 10, 2, 10)


def test_the_split_is_the_same_in_two_databases(
    sqlite_database_url, postgres_database_url, make_bundle
):
    bundle_path = make_bundle(n_adversarial=30)
    layouts = []
    for url in (sqlite_database_url, postgres_database_url):
        import_study(url, bundle_path, items_per_assignment=7, split_seed=3)
        session = session_for(url)
        try:
            layouts.append(
                [
                    [item.stimulus.stimulus_key for item in a.items]
                    for a in session.scalar(select(Study)).assignments
                ]
            )
        finally:
            session.close()
    assert layouts[0] == layouts[1]
    assert [len(g) for g in layouts[0]] == [6, 6, 6, 6, 6]


def _set_version(path, version):
    meta = json.loads((path / "bundle.json").read_text())
    meta["version"] = version
    (path / "bundle.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: _set_version(p, 99), "unsupported bundle version 99"),
        (
            lambda p: (p / "images" / "adv-00003.png").write_bytes(b"not a png"),
            "does not match its manifest hash",
        ),
        (lambda p: (p / "images" / "adv-00004.png").unlink(), "is missing"),
        (
            lambda p: (p / "manifest.jsonl").write_text((p / "manifest.jsonl").read_text()[:-40]),
            "does not match the hash",
        ),
    ],
    ids=["unknown-version", "altered-image", "missing-image", "truncated-manifest"],
)
def test_untrustworthy_bundles_are_refused_and_nothing_is_stored(
    sqlite_database_url, make_bundle, damage, message
):
    bundle_path = make_bundle(n_adversarial=10)
    damage(bundle_path)
    with pytest.raises(BundleError, match=message):
        import_study(sqlite_database_url, bundle_path)
    assert _counts(sqlite_database_url) == (0, 0, 0, 0)


def test_slug_conflicts_are_refused(sqlite_database_url, make_bundle):
    import_study(sqlite_database_url, make_bundle(n_adversarial=5))
    with pytest.raises(ImportRefused, match="taken by another bundle"):
        import_study(sqlite_database_url, make_bundle(n_adversarial=6))
    with pytest.raises(ImportRefused, match="must be lowercase"):
        import_study(sqlite_database_url, make_bundle(n_adversarial=6), slug="Bad Slug!")
    assert _counts(sqlite_database_url)[0] == 1


def test_import_command_reports_and_bad_input_exits_2(sqlite_database_url, make_bundle, capsys):
    bundle_path = make_bundle(n_adversarial=10)

    def run(*extra: str) -> int:
        return main(["import", str(bundle_path), "--database-url", sqlite_database_url, *extra])

    assert run("--items-per-assignment", "5") == 0
    out = capsys.readouterr().out
    assert "imported study 'ours-fc': 10 stimuli in 2 assignments" in out and "/lab/ours-fc" in out
    assert run() == 0
    assert "nothing changed" in capsys.readouterr().out
    _set_version(bundle_path, 7)
    assert run() == 2
    assert "unsupported bundle version 7" in capsys.readouterr().err
    assert run("--items-per-assignment", "0") == 2
    assert "--items-per-assignment must be at least 1, got 0" in capsys.readouterr().err
    assert main(["lab-url", "no-such-study", "--database-url", sqlite_database_url]) == 2
    assert "no study named 'no-such-study'" in capsys.readouterr().err
