"""The CPU-thread default (model/cpu_threads.py) reaches libgomp in every `advcritic` process.

libgomp reads its environment once, when torch loads it, so each check runs in a fresh
interpreter: in this one torch is already imported and the setting could no longer apply.
How much the default gains is measured by bench/threads.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAITING = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def run_python(code: str, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAITING}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


REPORT = (
    "import json, os, sys; print(json.dumps({'spin': os.environ.get('GOMP_SPINCOUNT'), "
    "'policy': os.environ.get('OMP_WAIT_POLICY'), 'torch': 'torch' in sys.modules}))"
)


def entry_point(argv: str) -> str:
    """Runs `advcritic ARGV` in-process (as the console script does), then reports."""
    return (
        "import sys\nfrom pipeline.cli import main\n"
        f"try:\n    main({argv!r}.split())\nexcept SystemExit:\n    pass\n"
        "import torch\n" + REPORT
    )


def test_a_fresh_process_gets_the_short_spin():
    code = (
        "from model.cpu_threads import configure_thread_waiting, SPIN_COUNT\n"
        "assert configure_thread_waiting() is True\n" + REPORT
    )
    assert run_python(code) == {"spin": "1000", "policy": None, "torch": False}


@pytest.mark.parametrize(
    "chosen", [{"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "PASSIVE"}], ids=str
)
def test_the_users_own_choice_is_kept(chosen):
    code = (
        "from model.cpu_threads import configure_thread_waiting\n"
        "assert configure_thread_waiting() is False\n" + REPORT
    )
    seen = run_python(code, **chosen)
    assert seen["spin"] == chosen.get("GOMP_SPINCOUNT")
    assert seen["policy"] == chosen.get("OMP_WAIT_POLICY")


def test_once_torch_is_loaded_it_is_too_late_and_says_so():
    code = (
        "import torch\nfrom model.cpu_threads import configure_thread_waiting\n"
        "assert configure_thread_waiting() is False\n" + REPORT
    )
    assert run_python(code) == {"spin": None, "policy": None, "torch": True}


@pytest.mark.parametrize("argv", ["train --help", "stimuli --help", "quickstart --help"])
def test_every_advcritic_command_sets_it_before_torch_loads(argv):
    seen = run_python(entry_point(argv))
    assert seen == {"spin": "1000", "policy": None, "torch": True}
