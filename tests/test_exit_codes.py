"""The exit-status convention (contract/cli.py) as a user meets it in a shell pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_reader_that_leaves_early_stops_the_command_without_a_traceback():
    """`study-server ... --help | head -1`: the first line arrives, the command stops with
    141 (as if killed by SIGPIPE) and one line on standard error instead of a traceback."""
    read, write = os.pipe()
    code = (
        "import sys\nfrom contract.cli import run_command\n"
        "def call():\n"
        "    for n in range(100000):\n"
        "        print(f'line {n}')\n"
        "sys.exit(run_command('demo', call))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=write,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        assert reader.readline() == b"line 0\n"
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141
    assert err.decode().strip() == "demo: stopped: its output was closed"
