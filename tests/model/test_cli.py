"""`advcritic attack` and `advcritic evaluate` on a real checkpoint; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.cli import main

QUIET = ["--no-progress"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_attack_writes_examples_and_prints_rho(fc_checkpoint: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "deepfool.pt"
    code, out, _ = run(
        [
            "attack",
            "--checkpoint",
            str(fc_checkpoint),
            "--attack",
            "deepfool",
            "--limit",
            "12",
            "--batch-size",
            "5",
            "--step-clip",
            "0.5",
            "--output",
            str(output),
            "--json",
            *QUIET,
        ],
        capsys,
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["attack"] == "deepfool" and summary["samples"] == 12
    assert summary["failures"] == 0 and 0 < summary["rho"] < 1
    saved = torch.load(output, weights_only=False)
    adversarial = saved["adversarial"]
    assert adversarial.shape == (12, 1, 28, 28)
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
    assert saved["ratios"].mean().item() == pytest.approx(summary["rho"], rel=1e-5)
    assert saved["summary"]["rho"] == summary["rho"]


def test_attack_text_output(fc_checkpoint: Path, capsys) -> None:
    code, out, _ = run(
        ["attack", "--checkpoint", str(fc_checkpoint), "--attack", "fgsm", "--limit", "16", *QUIET],
        capsys,
    )
    assert code == 0
    assert out.startswith("fgsm on reference/fc/mnist-5k seed 0 epoch 2: rho = ")
    assert "failures excluded" in out


def test_evaluate_json_and_markdown(fc_checkpoint: Path, tmp_path: Path, capsys) -> None:
    common = [
        "evaluate",
        "--checkpoint",
        str(fc_checkpoint),
        "--limit",
        "8",
        "--cw-steps",
        "20",
        "--cw-binary-steps",
        "2",
        "--max-iterations",
        "30",
        "--step-clip",
        "0.5",
        *QUIET,
    ]
    report = tmp_path / "eval.json"
    code, out, _ = run(
        [*common, "--attacks", "deepfool,cw,hc", "--format", "json", "--output", str(report)],
        capsys,
    )
    assert code == 0
    summary = json.loads(out)
    assert json.loads(report.read_text()) == summary
    assert 0 <= summary["test_error"] <= 1 and summary["samples"] == 8
    assert list(summary["attacks"]) == ["deepfool", "cw", "hc"]
    for row in summary["attacks"].values():
        assert row["samples"] == 8 and row["failures"] + row["misclassified"] <= 8
    assert summary["attacks"]["deepfool"]["failures"] == 0
    code, out, _ = run([*common, "--attacks", "df,fgsm"], capsys)
    assert code == 0
    assert "| deepfool |" in out and "| fgsm |" in out and "test error:" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attack", "pgd"], "unknown attack 'pgd'"),
        (["--attack", "deepfool,cw"], "--attack takes one attack"),
        (["--attack", "cw", "--limit", "0"], "--limit must be >= 1, got 0"),
        (["--attack", "cw", "--batch-size", "-3"], "--batch-size must be >= 1, got -3"),
        (["--attack", "cw", "--split", "valid"], "--split 'valid'"),
        (["--attack", "cw", "--dataset", "cifar10"], "unknown dataset 'cifar10'"),
        (
            ["--attack", "cw", "--dataset", "mnist", "--data-root", "/nonexistent"],
            "folder /nonexistent does not exist",
        ),
        (["--attack", "cw", "--device", "toaster"], "--device 'toaster'"),
        (["--attack", "hc", "--max-iterations", "0"], "--max-iterations must be >= 1, got 0"),
        (
            ["--attack", "hc", "--step-clip", "nan"],
            "--step-clip must be a positive number, got nan",
        ),
        (["--attack", "hc", "--threads", "0"], "--threads must be >= 1, got 0"),
    ],
)
def test_attack_bad_input_exits_2(
    fc_checkpoint: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    output = tmp_path / "never.pt"
    code, out, err = run(
        ["attack", "--checkpoint", str(fc_checkpoint), *extra, "--output", str(output), *QUIET],
        capsys,
    )
    assert code == 2
    assert message in err and err.startswith("advcritic attack: error: ")
    assert not output.exists() and out == ""


def test_bad_checkpoints_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), *QUIET], capsys)
    assert code == 2 and f"checkpoint not found: {tmp_path / 'missing.pt'}" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    code, _, err = run(
        ["attack", "--checkpoint", str(garbage), "--attack", "deepfool", *QUIET], capsys
    )
    assert code == 2 and "cannot read checkpoint" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attacks", "deepfool,bogus"], "unknown attack 'bogus'"),
        (["--attacks", ","], "no attack named"),
        (["--format", "xml"], "--format 'xml'"),
        (["--cw-steps", "0"], "--cw-steps 0 is out of range"),
    ],
)
def test_evaluate_bad_input_exits_2(
    fc_checkpoint: Path, capsys, extra: list[str], message: str
) -> None:
    code, _, err = run(["evaluate", "--checkpoint", str(fc_checkpoint), *extra, *QUIET], capsys)
    assert code == 2 and message in err
