"""scripts/gpu-check.sh's CPU side: the comparisons catch a disagreement, a missing GPU is a
clear refusal, and a dry run with the CPU standing in for the device goes end to end through
the real commands (training, evaluation, stimuli, the full-size epoch timing)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_comparisons_flag_what_is_out_of_tolerance():
    Comparison = _module().Comparison
    assert Comparison("rho", 0.230, 0.220, 0.10, relative=True).agrees
    assert not Comparison("rho", 0.260, 0.220, 0.10, relative=True).agrees
    assert Comparison("error", 0.051, 0.040, 0.03, relative=False).agrees
    assert not Comparison("error", 0.090, 0.040, 0.03, relative=False).agrees
    assert "OUT OF TOLERANCE" in Comparison("x", 2.0, 1.0, 0.1, relative=True).line()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the refusal cannot happen")
def test_without_a_gpu_the_check_refuses_clearly(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "no CUDA device here" in done.stderr
    assert not any(tmp_path.iterdir())


def test_a_dry_run_on_the_cpu_goes_end_to_end(tmp_path):
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--defenses", "reference,ours",
         "--stimuli-defense", "ours", "--steps", "2", "--eval-images", "20", "--stimuli", "10",
         "--timing-steps", "1", "--dataset", "mnist-5k", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["trained"]) == {"reference", "ours"}
    # The CPU against itself: the same seed gives the same models and the same stimuli.
    assert all(c["agrees"] and c["difference"] == 0 for c in report["comparisons"])
    assert len(report["comparisons"]) == 2 * 2 + 2
    assert report["stimuli"]["device"]["adversarial"] == 10
    epoch = report["ours_epoch"]
    assert epoch["seconds_per_step"] > 0 and epoch["epoch_seconds"] == pytest.approx(
        epoch["seconds_per_step"] * 600
    )
    assert "# GPU check" in (out / "report.md").read_text()
