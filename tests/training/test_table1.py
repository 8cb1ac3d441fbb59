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
    markdown_table,
    ordering_report,
    ratio_table,
)
from model.table1 import cache as table1_cache
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
    "--set",
    "hc-authors.steps=30",
    "--threads",
    "1",
    "--no-progress",
]
# The same settings as the cpu preset's attack overrides (what the cache is keyed by).
QUICK_OVERRIDES = {
    "deepfool": {"steps": 30},
    "cw": {"binary_search_steps": 3, "steps": 20, "initial_const": 0.1},
    "hc": {"steps": 30},
    "hc-authors": {"steps": 30},
}
QUICK_LIMIT = 12
TEST_IMAGES = 1000  # mnist-5k test split (the checkpoints name mnist-5k)
ATTACKS = ("deepfool", "cw", "hc", "hc-authors")


def quick_key(checkpoint, attack: str) -> dict:
    """The cache key of `attack` run with QUICK's settings on `checkpoint`."""
    from model.checkpoint import file_sha256
    from model.table1 import RHO_POLICIES

    return table1_cache.attack_key(
        checkpoint_sha256=file_sha256(checkpoint),
        attack=attack,
        overrides=QUICK_OVERRIDES[attack],
        policy=RHO_POLICIES[attack],
        limit=QUICK_LIMIT,
        test_images=TEST_IMAGES,
    )


def cached_summary(checkpoint, attack: str) -> dict:
    path = table1_cache.entry_path(checkpoint, quick_key(checkpoint, attack))
    return json.loads(path.read_text())["value"]


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
    # The table's mean and std are those of the per-attack results cached beside each checkpoint.
    for row in rows:
        checkpoints = [runs / f"{row['defense']}-s{seed}" / CHECKPOINT_FILE for seed in (0, 1)]
        for attack in ATTACKS:
            field = attack.replace("-", "_")
            values = [cached_summary(checkpoint, attack)["rho"] for checkpoint in checkpoints]
            assert float(row[f"rho_{field}_mean"]) == pytest.approx(
                statistics.fmean(values), abs=1e-5
            )
            assert float(row[f"rho_{field}_std"]) == pytest.approx(
                statistics.stdev(values), abs=1e-5
            )
            assert all(0 <= value < 1 for value in values) and max(values) > 0
            assert int(row[f"{field}_attacked"]) == 2 * QUICK_LIMIT
        # Both HC columns over DeepFool, beside the paper's ratio (0.173/0.131, 0.453/0.262).
        for attack in ("hc", "hc_authors"):
            assert float(row[f"ratio_{attack}_deepfool"]) == pytest.approx(
                float(row[f"rho_{attack}_mean"]) / float(row["rho_deepfool_mean"]), rel=1e-3
            )
        paper = {"reference": 0.173 / 0.131, "mm": 0.453 / 0.262}[row["defense"]]
        assert float(row["paper_ratio_hc_deepfool"]) == pytest.approx(paper, abs=1e-4)
        assert float(row["paper_rho_hc"]) in (0.173, 0.453)
        assert "paper_rho_hc_authors" not in row  # one paper HC column, compared with both

    document = (tmp_path / "table1.md").read_text()
    assert "| Reference | 2 |" in document and "| MM [19] | 2 |" in document
    assert "| ρ high-confidence | ρ high-confidence, authors' numerics |" in document
    assert "Paper: ρ high-confidence / ρ DeepFool |" in document
    reference = next(row for row in rows if row["defense"] == "reference")
    assert (
        f"| Reference | {float(reference['ratio_hc_deepfool']):.2f} | "
        f"{float(reference['ratio_hc_authors_deepfool']):.2f} | 1.32 |"
    ) in document
    assert "Regenerate: `advcritic table1" in document
    assert "of the paper's pairwise orderings hold" in document
    assert "- ρ high-confidence, authors' numerics: measured" in document


def test_cached_evaluations_are_reused_and_invalidated(runs, tmp_path, capsys):
    out = tmp_path / "table1"
    assert main(["table1", str(runs / "reference-s0"), "--out", str(out), *QUICK]) == 0
    checkpoint = runs / "reference-s0" / CHECKPOINT_FILE
    entry = table1_cache.entry_path(checkpoint, quick_key(checkpoint, "hc"))
    data = json.loads(entry.read_text())
    data["value"]["rho"] = 0.987654
    entry.write_text(json.dumps(data))
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


def test_a_new_column_runs_only_its_own_attack(runs, tmp_path, capsys):
    """Each attack is cached on its own: with the others cached, only the missing one runs."""
    checkpoint = runs / "mm-s0" / CHECKPOINT_FILE
    out = tmp_path / "table1"
    assert main(["table1", str(checkpoint), "--out", str(out), *QUICK]) == 0
    entries = {a: table1_cache.entry_path(checkpoint, quick_key(checkpoint, a)) for a in ATTACKS}
    # A marker in each cached entry shows which ones the next run served from the cache.
    for attack in ("deepfool", "cw", "hc"):
        data = json.loads(entries[attack].read_text())
        data["value"]["seconds"] = -1.0
        entries[attack].write_text(json.dumps(data))
    authors_rho = cached_summary(checkpoint, "hc-authors")["rho"]
    entries["hc-authors"].unlink()
    capsys.readouterr()

    assert main(["table1", str(checkpoint), "--out", str(out), *QUICK]) == 0
    assert f"hc-authors {authors_rho:.3f}" in capsys.readouterr().out  # recomputed, same value
    assert entries["hc-authors"].is_file()
    for attack in ("deepfool", "cw", "hc"):
        assert cached_summary(checkpoint, attack)["seconds"] == -1.0  # not re-run


def test_old_per_preset_cache_files_are_still_read(runs, tmp_path, capsys):
    """A `table1-<preset>.json` of the previous format answers for the attacks it recorded."""
    source = runs / "reference-s1" / CHECKPOINT_FILE
    (tmp_path / "run").mkdir()
    checkpoint = tmp_path / "run" / CHECKPOINT_FILE
    checkpoint.write_bytes(source.read_bytes())
    from model.checkpoint import file_sha256

    legacy = {
        "checkpoint_sha256": file_sha256(checkpoint),
        "settings": {
            "name": "cpu",
            "attacks": {a: QUICK_OVERRIDES[a] for a in ("deepfool", "cw", "hc")},
            "limits": dict.fromkeys(("deepfool", "cw", "hc"), QUICK_LIMIT),
        },
        "evaluation": {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(checkpoint),
            "defense": "reference",
            "network": "fc",
            "dataset": "mnist-5k",
            "seed": 1,
            "epoch": 1,
            "preset": "cpu",
            "test_error": 0.4321,
            "test_images": TEST_IMAGES,
            "attacks": {
                name: {
                    "rho": rho,
                    "attacked": QUICK_LIMIT,
                    "failures": 0,
                    "misclassified": 1,
                    "median_iterations": 3.0,
                    "seconds": 1.0,
                }
                for name, rho in (("deepfool", 0.111111), ("cw", 0.222222), ("hc", 0.333333))
            },
        },
    }
    (checkpoint.parent / "table1-cpu.json").write_text(json.dumps(legacy))
    assert main(["table1", str(checkpoint), "--out", str(tmp_path / "t"), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "error 43.21%, rho deepfool 0.111, cw 0.222, hc 0.333, hc-authors" in printed
    assert cached_summary(checkpoint, "hc")["rho"] == 0.333333  # copied into the new layout
    assert cached_summary(checkpoint, "hc-authors")["rho"] != 0.333333  # ran: not in the file
    # Other settings than the old file recorded: it does not answer for them.
    assert (
        main(
            ["table1", str(checkpoint), "--out", str(tmp_path / "t"), *QUICK]
            + ["--set", "deepfool.steps=31"]
        )
        == 0
    )
    assert "rho deepfool 0.111" not in capsys.readouterr().out


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
        _evaluation(
            "reference", 0, 0.03, {"deepfool": 0.10, "cw": 0.09, "hc": 0.15, "hc-authors": 0.14}
        ),
        _evaluation(
            "reference", 1, 0.05, {"deepfool": 0.12, "cw": 0.11, "hc": 0.17, "hc-authors": 0.16}
        ),
        _evaluation("ours", 0, 0.04, {"deepfool": 0.30, "cw": 0.08, "hc": 0.50, "hc-authors": 0.4}),
        _evaluation("ours", 1, 0.04, {"deepfool": 0.32, "cw": 0.06, "hc": 0.60, "hc-authors": 0.5}),
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
    assert table.count("Paper: ρ high-confidence") == 1  # the paper has one HC column
    # HC / DeepFool: ratio of the means (0.55/0.31, 0.45/0.31) beside the paper's 0.575/0.290.
    assert "| Ours | 1.77 | 1.45 | 1.98 |" in ratio_table(rows, "fc")
    assert "| Reference | 1.45 | 1.36 | 1.32 |" in ratio_table(rows, "fc")
