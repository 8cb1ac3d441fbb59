"""`analyze-study --proxy`: a PROXY Table 2 per defense and annotator from proxy-label files,
counted exactly, titled as what it is, and never mixed with people's labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from analysis.cli import main as analyze_study
from contract.labels import EXPORT_COLUMNS

# (defense, annotator) -> labels of 10 adversarial images of class 1 with target 7:
# change = 7, no change = 1, other = 4.
LABELS = {
    ("reference", "knn-k5"): [7] + [1] * 8 + [4],
    ("reference", "ensemble"): [1] * 10,
    ("ours", "knn-k5"): [7] * 6 + [1] * 3 + [4],
    ("ours", "ensemble"): [7] * 5 + [1] * 5,
}


def _row(defense: str, annotator: str, position: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(EXPORT_COLUMNS, "")
    row.update(
        study=f"{defense}-fc-s0-proxy",
        defense=defense,
        network="fc",
        assignment=0,
        position=position,
        stimulus_id=f"adv-{position:05d}",
        kind="adversarial",
        original_label=1,
        target=7,
        worker_source="proxy",
        worker_id=annotator,
        allocation_status="submitted",
        verification="proxy",
    )
    row.update(values)
    return row


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def proxy_file(tmp_path: Path) -> Path:
    rows = []
    for (defense, annotator), labels in LABELS.items():
        rows += [_row(defense, annotator, n, label=label) for n, label in enumerate(labels)]
        # Not counted: a target equal to the true class, and a catch trial.
        rows.append(_row(defense, annotator, 10, label=7, target=1))
        rows.append(_row(defense, annotator, 11, label=3, kind="catch", target=""))
    return write_rows(tmp_path / "proxy.csv", rows)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = analyze_study(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_markdown_per_annotator_and_defense_says_proxy(proxy_file, capsys):
    status, out, _ = run(capsys, "--proxy", str(proxy_file))
    assert status == 0
    assert out.startswith("# PROXY Table 2: labels from classifiers, NOT from people")
    assert "**These are not human labels.**" in out
    knn = out.split("## FC, annotator knn-k5 (proxy)")[1]
    ensemble = out.split("## FC, annotator ensemble (proxy)")[1].split("## ")[0]
    assert "| Reference | 10 | 10.00 [" in knn and "| 0.57 | 80.00 [" in knn
    assert "| Ours | 10 | 60.00 [" in knn and "| 87.99 | 30.00 [" in knn
    assert "| Reference | 10 | 0.00 [0.00, 27.75] | 0.57 | 100.00 [72.25, 100.00] |" in ensemble
    assert "Ordering by % change: ours > reference" in knn and "ours > reference" in ensemble


def test_csv_and_json_carry_the_same_counts_and_the_proxy_mark(proxy_file, capsys):
    status, out, _ = run(capsys, "--proxy", str(proxy_file), "--format", "csv")
    assert status == 0
    rows = {(r["defense"], r["annotator"]): r for r in csv.DictReader(out.splitlines())}
    assert set(rows) == set(LABELS)
    assert rows["ours", "knn-k5"]["change_pct"] == "60.0"
    assert rows["ours", "knn-k5"]["other_pct"] == "10.0"
    assert {r["labels"] for r in rows.values()} == {"proxy (classifiers, not people)"}
    status, out, _ = run(
        capsys, "--proxy", str(proxy_file), "--format", "json", "--defense", "ours"
    )
    document = json.loads(out)
    assert document["proxy"] is True
    assert [(r["defense"], r["annotator"], r["images"]) for r in document["results"]] == [
        ("ours", "ensemble", 10),
        ("ours", "knn-k5", 10),
    ]


@pytest.mark.parametrize(
    ("source", "verification"), [("mturk", "confirmed"), ("local", "not_applicable")]
)
def test_a_file_mixing_human_rows_is_refused(proxy_file, tmp_path, capsys, source, verification):
    with proxy_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.append(dict(rows[0], worker_source=source, worker_id="W1", verification=verification))
    mixed = write_rows(tmp_path / "mixed.csv", rows)
    status, out, err = run(capsys, "--proxy", str(mixed))
    assert status == 2 and out == ""
    assert f"{mixed} mixes proxy labels with other rows" in err
    assert f"{source}/{verification}" in err


def test_proxy_is_analyzed_alone_and_missing_files_are_named(proxy_file, tmp_path, capsys):
    status, _, err = run(capsys, "--proxy", str(proxy_file), "--export", str(proxy_file))
    assert status == 2 and "--proxy is analyzed on its own" in err
    status, _, err = run(capsys, "--proxy", str(tmp_path / "none.csv"))
    assert status == 2 and f"export file not found: {tmp_path / 'none.csv'}" in err
    status, _, err = run(capsys, "--proxy", str(proxy_file), "--defense", "vat")
    assert status == 2 and "no study of defense 'vat'" in err
