"""`analyze-study` on a database filled through the real server (uvicorn, HTTP) with known labels.

Lab participants label through the lab mode; one MTurk worker submits but is never confirmed
by `mturk sync`. The figures must equal the ones counted here by hand from what each person
was shown, from the database and from the server's CSV/JSON exports alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from PIL import Image

from analysis.cli import main as analyze_study
from analysis.stats import wilson_interval
from testkit.servers import ADMIN_TOKEN, MTURK_TEST_SUBMIT_HOST, make_settings
from testkit.studies import NO_ATTENTION_POLICY, import_study, invite, register_hits
from tests.fixtures.mturk import label_by_rule, records_by_image
from tests.server.flow import consent_sha256


def _label_assignment(web, slug, by_image, *, worker=None, code=None, mturk=None):
    body = {"code": code} if code else {"worker_id": worker}
    body["consent_sha256"] = consent_sha256(web, slug)
    if mturk:
        body["mturk"] = {
            "assignment_id": mturk,
            "hit_id": "HITX",
            "turk_submit_to": MTURK_TEST_SUBMIT_HOST,
        }
    accepted = web.post(f"/api/studies/{slug}/accept", json=body).json()
    shown = [
        by_image[hashlib.sha256(web.get(url).content).hexdigest()] for url in accepted["item_urls"]
    ]
    labels = [label_by_rule(record) for record in shown]
    submit = {
        **({"code": code} if code else {"worker_id": worker}),
        "labels": [{"position": p, "label": label} for p, label in enumerate(labels)],
    }
    if mturk:
        submit["mturk_assignment_id"] = mturk
    assert web.post(accepted["submit_url"], json=submit).json()["status"] == "stored"
    return list(zip(shown, labels, strict=True))


def _fill(database_url, make_bundle, live_server_factory, protocol=NO_ATTENTION_POLICY):
    """36 images (30 adversarial, 6 catch) in 6 assignments: 4 done in the lab (invited), 1 on
    MTurk (never confirmed). No attention policy unless `protocol` gives one (the figures are
    counted by hand; the policy's effect has its own test)."""
    bundle = make_bundle(n_adversarial=30, n_catch=6)
    import_study(database_url, bundle, items_per_assignment=5, protocol=protocol)
    register_hits(database_url, "ours-fc", ["HITX"])
    codes = invite(database_url, "ours-fc", 4)
    server = live_server_factory(make_settings(database_url))
    by_image = records_by_image(bundle)
    with server.client() as web:
        lab = [
            pair
            for code in codes
            for pair in _label_assignment(web, "ours-fc", by_image, code=code)
        ]
        _label_assignment(web, "ours-fc", by_image, worker="AUNCONFIRMED", mturk="ASSIGNX")
        exports = {
            fmt: web.get(
                "/admin/studies/ours-fc/export",
                params={"format": fmt},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            for fmt in ("csv", "json")
        }
    return database_url, lab, exports


@pytest.fixture
def labeled(database_url, make_bundle, live_server_factory):
    """On SQLite and PostgreSQL."""
    return _fill(database_url, make_bundle, live_server_factory)


@pytest.fixture
def labeled_sqlite(sqlite_database_url, make_bundle, live_server_factory):
    return _fill(sqlite_database_url, make_bundle, live_server_factory)


def _by_hand(pairs):
    outcome = Counter()
    per_class: dict[int, Counter] = {}
    for record, label in pairs:
        if record.kind == "catch":
            outcome["catch"] += 1
            outcome["catch_correct"] += label == record.original_label
            continue
        kind = (
            "change"
            if label == record.target
            else "no_change"
            if label == record.original_label
            else "other"
        )
        outcome[kind] += 1
        outcome["images"] += 1
        per_class.setdefault(record.original_label, Counter())[kind] += 1
    return outcome, per_class


def _run(capsys, argv):
    code = analyze_study(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_figures_equal_the_hand_counted_ones_from_the_database_and_from_exports(
    labeled, capsys, tmp_path
):
    database_url, lab, exports = labeled
    hand, per_class = _by_hand(lab)
    assert hand["images"] == 20 and hand["catch"] == 4  # 4 lab assignments of 5 + 1 catch trial

    code, out, _ = _run(
        capsys,
        [
            "--defense",
            "ours",
            "--source",
            "all",
            "--format",
            "json",
            "--database-url",
            database_url,
        ],
    )
    assert code == 0
    (result,) = json.loads(out)["results"]
    for kind in ("change", "no_change", "other"):
        share = result[kind]
        assert (share["count"], share["total"]) == (hand[kind], 20)
        assert share["percent"] == 100 * hand[kind] / 20
        low, high = wilson_interval(hand[kind], 20)
        assert (share["ci95_low"], share["ci95_high"]) == (100 * low, 100 * high)
    assert {c["original_class"]: c["change"]["count"] for c in result["per_class"]} == {
        str(k): v["change"] for k, v in per_class.items()
    }
    assert (result["catch_accuracy"]["count"], result["catch_accuracy"]["total"]) == (
        hand["catch_correct"],
        4,
    )
    assert result["paper"] == {"change_pct": 87.99, "no_change_pct": 9.86}
    assert (result["annotators"], result["assignments"], result["labels_by_source"]) == (
        4,
        4,
        {"local": 24},
    )
    assert result["excluded"] == {"MTurk submission not yet confirmed (run `mturk sync`)": 6}

    for fmt, response in exports.items():
        assert response.status_code == 200
        path = tmp_path / f"labels.{fmt}"
        path.write_bytes(response.content)
        code, from_export, _ = _run(
            capsys,
            ["--defense", "ours", "--source", "all", "--format", "json", "--export", str(path)],
        )
        assert code == 0
        if fmt == "json":
            assert from_export == out
        else:  # a CSV export does not carry the dataset's name; every figure is the same
            (exported,) = json.loads(from_export)["results"]
            assert (
                exported["datasets"] == []
                and {**exported, "datasets": result["datasets"]} == result
            )

    code, csv_text, _ = _run(
        capsys,
        ["--defense", "ours", "--net", "fc", "--source", "all", "--format", "csv"]
        + ["--database-url", database_url],
    )
    header, overall = csv_text.splitlines()[:2]
    row = dict(zip(header.split(","), overall.split(","), strict=True))
    assert (row["scope"], int(row["change_count"]), float(row["change_pct"])) == (
        "all",
        hand["change"],
        100 * hand["change"] / 20,
    )
    code, markdown, _ = _run(
        capsys, ["--defense", "ours", "--source", "all", "--database-url", database_url]
    )
    assert (
        f"| FC | Ours | 20 | {100 * hand['change'] / 20:.2f} [" in markdown
        and "| 87.99 |" in markdown
    )
    assert (
        "**Not a study:** ours-fc" in markdown
    )  # the fixture's images are synthetic, and the table says so


def test_failed_attention_is_left_out_with_its_reasons_and_can_be_included(
    database_url, make_bundle, live_server_factory, capsys, tmp_path
):
    """The default policy (half of the catch trials right): the simulated people get every
    third catch trial wrong, so some of the four lab assignments fail. Table 2 leaves them
    out, lists each with its numbers, and counts them on request; an export says the same."""
    _, lab, exports = _fill(database_url, make_bundle, live_server_factory, protocol=None)
    per_assignment = [lab[i : i + 6] for i in range(0, len(lab), 6)]  # 5 images + 1 catch each
    passed = [
        pairs
        for pairs in per_assignment
        if all(label == r.original_label for r, label in pairs if r.kind == "catch")
    ]
    failed = len(per_assignment) - len(passed)
    assert 0 < failed < len(per_assignment)  # the bundle's catch trials make it so
    hand, _ = _by_hand([pair for pairs in passed for pair in pairs])
    argv = ["--defense", "ours", "--source", "all", "--format", "json"]
    code, out, _ = _run(capsys, [*argv, "--database-url", database_url])
    (result,) = json.loads(out)["results"]
    assert code == 0 and result["change"]["count"] == hand["change"]
    assert result["annotators"] == len(passed)
    reason = "from submissions that failed the study's attention policy (listed below)"
    assert result["excluded"][reason] == 6 * failed
    assert len(result["attention_failures"]) == failed
    assert all(
        "0 of 1 catch trial(s) right (0%; the policy asks for at least 50%)" in f["why"]
        for f in result["attention_failures"]
    )
    code, included, _ = _run(
        capsys, [*argv, "--database-url", database_url, "--include-failed-attention"]
    )
    (everyone,) = json.loads(included)["results"]
    assert everyone["annotators"] == 4 and everyone["failed_attention_included"] is True
    assert "INCLUDED" in json.loads(included)["counted"]
    path = tmp_path / "labels.csv"
    path.write_bytes(exports["csv"].content)
    code, from_export, _ = _run(capsys, [*argv, "--export", str(path)])
    assert (
        json.loads(from_export)["results"][0]["attention_failures"]
        == (result["attention_failures"])
    )
    code, markdown, _ = _run(
        capsys, ["--defense", "ours", "--source", "all", "--database-url", database_url]
    )
    assert f"Left out for failing the study's attention policy ({failed} submission(s)" in markdown


def test_whose_labels_count_can_be_chosen(labeled_sqlite, capsys):
    database_url, _, _ = labeled_sqlite
    code, _, err = _run(
        capsys, ["--defense", "ours", "--source", "mturk", "--database-url", database_url]
    )
    assert (
        code == 2
        and "6 MTurk submission not yet confirmed" in err
        and "24 lab (local-mode) label" in err
    )
    code, out, _ = _run(
        capsys,
        [
            "--defense",
            "ours",
            "--source",
            "local",
            "--format",
            "json",
            "--database-url",
            database_url,
        ],
    )
    assert code == 0 and json.loads(out)["results"][0]["change"]["total"] == 20


def test_a_study_with_hits_counts_its_confirmed_mturk_work_by_default_and_says_so(
    labeled_sqlite, capsys
):
    database_url, _, _ = labeled_sqlite
    code, _, err = _run(capsys, ["--defense", "ours", "--database-url", database_url])
    assert code == 2 and "6 MTurk submission not yet confirmed" in err
    assert "24 lab (local-mode) label, left out" in err and "--source all" in err


def test_a_study_without_hits_counts_its_invited_lab_work_by_default(
    sqlite_database_url, make_bundle, live_server_factory, capsys
):
    bundle = make_bundle(n_adversarial=10)
    import_study(sqlite_database_url, bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(sqlite_database_url))
    with server.client() as web:
        for code in invite(sqlite_database_url, "ours-fc", 2):
            _label_assignment(web, "ours-fc", records_by_image(bundle), code=code)
    code, out, _ = _run(
        capsys, ["--defense", "ours", "--format", "json", "--database-url", sqlite_database_url]
    )
    document = json.loads(out)
    assert code == 0 and document["source"] == "auto"
    assert document["results"][0]["counted_source"] == "local"
    assert document["results"][0]["labels_by_source"] == {"local": 10}
    assert "invited lab (local-mode) submissions only (it has no HITs" in document["counted"]


def test_empty_and_unknown_studies_are_clear_errors_and_all_skips_the_empty(
    labeled_sqlite, capsys, make_bundle, tmp_path
):
    database_url, _, _ = labeled_sqlite
    import_study(
        database_url, make_bundle(n_adversarial=5, defense="mm", seed=1), items_per_assignment=5
    )
    code, _, err = _run(capsys, ["--defense", "mm", "--database-url", database_url])
    assert code == 2 and "mm-fc" in err and "no labels stored yet" in err
    code, _, err = _run(capsys, ["--defense", "vat", "--database-url", database_url])
    assert code == 2 and "no study of defense 'vat'" in err and "ours-fc (ours/fc)" in err
    code, _, err = _run(capsys, ["--study", "nope", "--database-url", database_url])
    assert code == 2 and "unknown study 'nope'" in err
    code, out, err = _run(
        capsys,
        ["--all", "--source", "all", "--plot", str(tmp_path / "fig" / "table2.png")]
        + ["--database-url", database_url],
    )
    assert (
        code == 0
        and "| FC | Ours |" in out
        and "Skipped (no counted labels)" in out
        and "mm-fc" in out
    )
    with Image.open(tmp_path / "fig" / "table2.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_bad_sources_of_labels_are_clear_errors(capsys, tmp_path):
    code, _, err = _run(
        capsys, ["--defense", "ours", "--database-url", f"sqlite:///{tmp_path}/missing.db"]
    )
    assert code == 2 and "no SQLite database at" in err
    broken = tmp_path / "broken.csv"
    broken.write_text("study,label\nours-fc,3\n")
    code, _, err = _run(capsys, ["--defense", "ours", "--export", str(broken)])
    assert code == 2 and "missing column(s) defense" in err
    code, _, err = _run(capsys, ["--defense", "ours", "--export", str(tmp_path / "none.json")])
    assert code == 2 and "export file not found" in err


def test_the_database_road_carries_rho_for_the_psychometric_view(labeled_sqlite, capsys):
    database_url, lab, _ = labeled_sqlite
    argv = ["--defense", "ours", "--format", "json", "--source", "local"]
    code, out, _ = _run(capsys, [*argv, "--database-url", database_url])
    (result,) = json.loads(out)["results"]
    rho = next(c for c in result["psychometric"] if c["variable"] == "rho")
    assert code == 0 and rho["labels_without_value"] == 0
    assert sum(b["labels"] for b in rho["bins"]) == 20
    shown = sorted(record.rho for record, _ in lab if record.kind == "adversarial")
    assert rho["bins"][0]["low"] == shown[0] and rho["bins"][-1]["high"] == shown[-1]
    assert result["per_image"] is None  # one label per image: no consensus to report
    assert result["clustered"]["change"]["annotators"] == 4
