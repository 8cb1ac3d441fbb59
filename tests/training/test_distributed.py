"""Multi-process training for real: torchrun, the gloo backend, two CPU processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.training import CHECKPOINT_FILE, Trainer
from tests.training.conftest import tiny_config

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_two_processes(config, out: Path) -> tuple[dict, dict]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        json.dumps(config.to_dict()),
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")


def test_two_processes_take_the_same_steps_as_one_with_the_whole_batch(mnist5k, tmp_path):
    config = tiny_config("reference", epochs=2, eval_every=0)
    rank0, rank1 = run_two_processes(config, tmp_path / "ddp")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    # The workers load mnist-5k themselves; the same training subset comes from the limit.
    single = Trainer(config, tmp_path / "single", data=mnist5k, progress=False)
    single.run()
    for key, value in single.net.state_dict().items():
        # Same data, same global batches; only the order of floating-point sums differs.
        assert torch.allclose(rank0[f"classifier.{key}"], value, atol=2e-4), key
    saved = load_checkpoint(tmp_path / "ddp" / CHECKPOINT_FILE)
    assert saved.epoch == 2 and saved.metrics["complete"]
    assert all(torch.equal(v, rank0[f"classifier.{k}"]) for k, v in saved.classifier_state.items())


@pytest.mark.parametrize(
    "name",
    [
        "ours",
        pytest.param("mm", marks=pytest.mark.slow),
        pytest.param("vat", marks=pytest.mark.slow),
        pytest.param("at", marks=pytest.mark.slow),
    ],
)
def test_processes_stay_in_sync_through_second_order_and_critic_updates(name, tmp_path):
    """Each process attacks different images; DDP must still average every gradient,
    including those through the attack and the critic's, or the replicas drift apart."""
    rank0, rank1 = run_two_processes(tiny_config(name, eval_every=0), tmp_path)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    if name == "ours":
        assert any(k.startswith("critic.") for k in rank0)
