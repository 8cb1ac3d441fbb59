"""`advcritic table1` on real (tiny) checkpoints, and the aggregation behind it."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from model.cli import main
from model.table1 import (
    AttackSummary,
    CheckpointEvaluation,
    build_rows,
    cache_path,
    markdown_table,
    ordering_report,
)
from model.table1.presets import EVALUATION_PRESETS
from model.training import CHECKPOINT_FILE, Trainer
from tests.training.conftest import tiny_config

# Attack settings small enough for CI; the table logic does not depend on them.
QUICK = [
    "--limit",
    "12",
    "--set",
    "cw.binary_search_steps=3",
    "--set",
    "cw.steps=20",
    "--set",
    "cw.initial_const=0.1",
    "--set",
    "deepfool.steps=30",
    "--set",
    "hc.steps=30",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    """Two defenses x two seeds, each trained for real for a few steps."""
    root = tmp_path_factory.mktemp("runs")
    for defense in ("reference", "mm"):
        for seed in (0, 1):
            config = tiny_config(defense, seed=seed, eval_every=0)
            Trainer(config, root / f"{defense}-s{seed}", data=tiny_data, progress=False).run()
    return root


def test_table1_from_runs_writes_markdown_and_csv(runs, tmp_path, capsys):
    out = tmp_path / "table1"
    assert main(["table1", str(runs), "--out", str(out), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "[4/4]" in printed and f"wrote {out}.md and {out}.csv" in printed

    rows = list(csv.DictReader((tmp_path / "table1.csv").open()))
    assert [(row["defense"], row["runs"], row["seeds"]) for row in rows] == [
        ("reference", "2", "0 1"),
        ("mm", "2", "0 1"),
    ]
    # The table's mean and std are those of the per-run evaluations cached beside each checkpoint.
    for row in rows:
        per_run = [
            json.loads(
                cache_path(
                    runs / f"{row['defense']}-s{seed}" / CHECKPOINT_FILE, EVALUATION_PRESETS["cpu"]
                ).read_text()
            )["evaluation"]
            for seed in (0, 1)
        ]
        for attack in ("deepfool", "cw", "hc"):
            values = [run["attacks"][attack]["rho"] for run in per_run]
            assert float(row[f"rho_{attack}_mean"]) == pytest.approx(
                statistics.fmean(values), abs=1e-5
            )
            assert float(row[f"rho_{attack}_std"]) == pytest.approx(
                statistics.stdev(values), abs=1e-5
            )
            assert all(0 <= value < 1 for value in values) and max(values) > 0
        assert float(row["paper_rho_hc"]) in (0.173, 0.453)

    document = (tmp_path / "table1.md").read_text()
    assert "| Reference | 2 |" in document and "| MM [19] | 2 |" in document
    assert "Regenerate: `advcritic table1" in document
    assert "of the paper's pairwise orderings hold" in document


def test_cached_evaluations_are_reused_and_invalidated(runs, tmp_path, capsys):
    out = tmp_path / "table1"
    assert main(["table1", str(runs / "reference-s0"), "--out", str(out), *QUICK]) == 0
    cache = cache_path(runs / "reference-s0" / CHECKPOINT_FILE, EVALUATION_PRESETS["cpu"])
    data = json.loads(cache.read_text())
    data["evaluation"]["attacks"]["hc"]["rho"] = 0.987654
    cache.write_text(json.dumps(data))
    capsys.readouterr()

    assert main(["table1", str(runs / "reference-s0"), "--out", str(out), *QUICK]) == 0
    assert "hc 0.988" in capsys.readouterr().out  # served from the cache
    # Other attack settings are another evaluation: the cache does not answer for them.
    assert (
        main(
            [
                "table1",
                str(runs / "reference-s0"),
                "--out",
                str(out),
                *QUICK,
                "--set",
                "hc.steps=60",
            ]
        )
        == 0
    )
    assert "hc 0.988" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/nowhere"], "no such checkpoint or run folder"),
        (["{tmp}"], "no checkpoint.pt under"),
        (["{runs}", "--set", "pgd.steps=3"], "unknown attack 'pgd'"),
        (["{runs}", "--set", "cw.stepz=3"], "invalid settings for attack 'cw'"),
        (["{runs}", "--set", "cw.steps=many"], "is not a number"),
        (["{runs}", "--set", "cw"], "expected ATTACK.KEY=VALUE"),
        (["{runs}", "--limit", "0"], "--limit must be positive"),
    ],
)
def test_bad_input_exits_2(arguments, message, runs, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, runs=runs) for a in arguments]
    assert main(["table1", *argv, "--out", str(tmp_path / "t")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()


def test_unfinished_and_duplicate_runs_are_refused(runs, tiny_data, tmp_path, capsys):
    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(
            tiny_config("reference", epochs=2, eval_every=0),
            tmp_path / "half",
            data=tiny_data,
            progress=False,
            on_epoch_end=stop,
        ).run()
    assert main(["table1", str(tmp_path / "half"), "--out", str(tmp_path / "t")]) == 2
    assert "unfinished run (epoch 1)" in capsys.readouterr().err

    assert (
        main(
            [
                "table1",
                str(runs / "mm-s0"),
                str(runs / "mm-s0" / CHECKPOINT_FILE),
                str(runs / "mm-s1"),
                "--out",
                str(tmp_path / "t"),
                *QUICK,
            ]
        )
        == 0
    )
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / CHECKPOINT_FILE).write_bytes(
        (runs / "mm-s1" / CHECKPOINT_FILE).read_bytes()
    )
    capsys.readouterr()
    assert (
        main(["table1", str(runs / "mm-s1"), str(tmp_path / "copy"), "--out", str(tmp_path / "t")])
        == 2
    )
    assert "are both mm/fc seed 1" in capsys.readouterr().err


def _evaluation(
    defense: str, seed: int, error: float, rho: dict[str, float]
) -> CheckpointEvaluation:
    attacks = {
        name: AttackSummary(value, 100, 1 if name == "cw" else 0, 2, 10.0, 1.0)
        for name, value in rho.items()
    }
    return CheckpointEvaluation(
        "x", "sha", defense, "fc", "mnist-5k", seed, 21, "cpu", error, 1000, attacks
    )


def test_rows_statistics_and_ordering_verdicts():
    evaluations = [
        _evaluation("reference", 0, 0.03, {"deepfool": 0.10, "cw": 0.09, "hc": 0.15}),
        _evaluation("reference", 1, 0.05, {"deepfool": 0.12, "cw": 0.11, "hc": 0.17}),
        _evaluation("ours", 0, 0.04, {"deepfool": 0.30, "cw": 0.08, "hc": 0.50}),
        _evaluation("ours", 1, 0.04, {"deepfool": 0.32, "cw": 0.06, "hc": 0.60}),
    ]
    rows = build_rows(evaluations)
    assert [row.defense for row in rows] == ["reference", "ours"]
    reference = rows[0]
    assert reference.error_percent.mean == pytest.approx(4.0)
    assert reference.error_percent.std == pytest.approx(statistics.stdev([3.0, 5.0]))
    assert reference.rho["deepfool"].mean == pytest.approx(0.11)
    assert reference.failures["cw"] == 2 and reference.attacked["cw"] == 200

    report = ordering_report(rows, "fc")
    assert report[0].startswith("- ρ DeepFool: measured ours > reference; 1/1")
    assert "differs: ours ≤ reference" in report[1]
    table = markdown_table(rows, "fc")
    assert "| Ours | 2 | 4.00 ± 0.00 | 0.310 ± 0.014 |" in table
    assert "Reference: 2/200 CW-L2" in table
