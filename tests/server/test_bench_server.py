"""bench/server.py runs end to end at a tiny size: the whole study replayed without an
error, every label stored once, each step measured alone. Its figures are for
docs/benchmarks.md, not asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


def test_the_server_benchmark_replays_a_study_and_measures_each_step():
    run = subprocess.run(
        [sys.executable, "bench/server.py", "--assignments", "4", "--items", "5"]
        + ["--clients", "2", "--steps", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert re.search(r"errors\s+0\s", out)
    assert "labels stored   20 for 20 distinct images (expected 20 each)" in out
    steps = dict(
        re.findall(r"^\s+(page|accept|image|save|submit)\s+n=(\d+)\s.*errors 0$", out, re.M)
    )
    assert steps == {"page": "2", "accept": "2", "image": "10", "save": "10", "submit": "2"}
    assert re.search(r"goals: errors 0 \(0: met\); p99 [\d.]+x bare", out)
    machine = re.findall(r"CPU per request \((study|bare)\): .*whole machine ([\d.]+) ms", out)
    assert [name for name, _ in machine] == ["study", "bare"]
    assert all(float(ms) > 0 for _, ms in machine)  # the machine did work for each request
