"""`advcritic proxy-labels` end to end (bundle -> CSV -> `analyze-study --proxy`), and its
answers to bad input: exit status 2, a message naming the bad value, nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from analysis.cli import main as analyze_study
from contract.labels import EXPORT_COLUMNS
from model.cli import main
from tests.proxy.conftest import TINY_CLI_ARGS, write_digit_bundle


@pytest.fixture(scope="module")
def clean_bundle(clean_digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 clean test digits labeled as reference/fc stimuli with made-up targets."""
    images, labels = clean_digits
    return write_digit_bundle(
        tmp_path_factory.mktemp("bundles") / "reference-fc",
        images[:100],
        labels[:100],
        (labels[:100] + 1) % 10,
    )


def test_labels_a_bundle_and_analyze_study_reads_them(
    clean_bundle, clean_digits, tiny_annotators, annotators_dir, tmp_path, capsys
):
    out = tmp_path / "proxy.csv"
    argv = ["proxy-labels", str(clean_bundle), "--out", str(out)]
    argv += ["--annotators-dir", str(annotators_dir), *TINY_CLI_ARGS]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "training" not in captured.err  # the members were cached by `tiny_annotators`
    assert captured.err.count("loaded") == 2
    accuracy = tiny_annotators.accuracy
    shown = ", ".join(f"{name} {100 * value:.2f}%" for name, value in accuracy.items())
    assert f"clean accuracy on the mnist-5k test split: {shown}" in captured.out
    assert list(accuracy) == ["knn-k5", "ensemble", "ensemble-fc", "ensemble-lenet5"]

    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == EXPORT_COLUMNS
    assert len(rows) == 4 * 100
    assert {(r["worker_source"], r["verification"], r["study"]) for r in rows} == {
        ("proxy", "proxy", "reference-fc-s0-proxy")
    }

    # analyze-study --proxy: per annotator, "no change" is its accuracy on these clean digits.
    images, labels = clean_digits
    assert analyze_study(["--proxy", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("# PROXY Table 2: labels from classifiers, NOT from people")
    for annotator in tiny_annotators.annotators:
        right = int((annotator.predict(images[:100]) == labels[:100]).sum())
        assert f"## FC, annotator {annotator.name} (proxy)" in table
        section = table.split(f"annotator {annotator.name}")[1].splitlines()
        row = next(line for line in section if line.startswith("| Reference |"))
        assert row.split(" | ")[4].startswith(f"{right:.2f} [")  # 100 images: count = percent


def test_a_file_mixing_proxy_and_human_rows_is_refused(
    clean_bundle, annotators_dir, tmp_path, capsys
):
    out = tmp_path / "proxy.csv"
    argv = ["proxy-labels", str(clean_bundle), "--out", str(out)]
    assert main([*argv, "--annotators-dir", str(annotators_dir), *TINY_CLI_ARGS]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    human = dict(rows[0], worker_source="mturk", worker_id="A1B2", verification="confirmed")
    with out.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, lineterminator="\n").writerow(human)
    capsys.readouterr()
    assert analyze_study(["--proxy", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{out} mixes proxy labels with other rows" in error and "mturk/confirmed" in error


def _damage_image(bundle: Path) -> str:
    image = sorted((bundle / "images").iterdir())[3]
    image.write_bytes(image.read_bytes()[:-10])
    return f"image images/{image.name} does not match its manifest hash"


def _drop_manifest(bundle: Path) -> str:
    (bundle / "manifest.jsonl").unlink()
    return "manifest.jsonl is missing"


def _unknown_dataset(bundle: Path) -> str:
    header = json.loads((bundle / "bundle.json").read_text())
    header["dataset"] = "cifar-10"
    (bundle / "bundle.json").write_text(json.dumps(header))
    return "unknown dataset 'cifar-10'"


@pytest.mark.parametrize(
    "damage",
    [_damage_image, _drop_manifest, _unknown_dataset],
    ids=["image", "manifest", "dataset"],
)
def test_a_damaged_bundle_is_named_and_nothing_is_written(damage, clean_bundle, tmp_path, capsys):
    broken = Path(shutil.copytree(clean_bundle, tmp_path / "broken"))
    problem = damage(broken)
    out, annotators = tmp_path / "proxy.csv", tmp_path / "annotators"
    argv = ["proxy-labels", str(clean_bundle), str(broken), "--out", str(out)]
    assert main([*argv, "--annotators-dir", str(annotators), *TINY_CLI_ARGS]) == 2
    error = capsys.readouterr().err
    assert f"bundle {broken}:" in error and problem in error
    assert not out.exists() and not annotators.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["{tmp}/nowhere"], "bundle folder not found: {tmp}/nowhere"),
        (["--k", "0"], "--k must be >= 1, got 0"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--train-limit", "-5"], "--train-limit must be >= 1, got -5"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--members", "cnn-s1"], "unknown network 'cnn'"),
        (["--members", "fc-101"], "ensemble member 'fc-101': expected NETWORK-sSEED"),
        (["--members", "fc-s1,fc-s1"], "ensemble members repeat"),
        (["{bundle}"], "bundles {bundle} and {bundle} are both reference/fc seed 0"),
        (["--k", "4001"], "annotators for dataset 'mnist-5k': k must be in 1..4000, got 4001"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(extra, message, clean_bundle, tmp_path, capsys):
    out, annotators = tmp_path / "proxy.csv", tmp_path / "annotators"
    names = {"tmp": tmp_path, "bundle": clean_bundle}
    argv = ["proxy-labels", str(clean_bundle), *[e.format(**names) for e in extra]]
    argv += ["--out", str(out), "--annotators-dir", str(annotators)]
    assert main(argv) == 2
    assert message.format(**names) in capsys.readouterr().err
    assert not out.exists() and not annotators.exists()
