"""`advcritic train` as a user runs it: real training, resume, and clear errors."""

from __future__ import annotations

import json

import pytest

from model.checkpoint import load_checkpoint
from model.cli import main
from model.training import CHECKPOINT_FILE, METRICS_FILE, TrainingData


@pytest.fixture(autouse=True)
def mnist5k_in_memory(monkeypatch, mnist5k):
    """The real mnist-5k, loaded once per session instead of once per command."""
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, dataset, root=None: mnist5k))


TINY = ["--net", "fc", "--batch-size", "50", "--train-limit", "100", "--no-progress"]


def test_train_then_resume_with_more_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--defense", "reference", "--epochs", "1", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "training reference-fc-mnist-5k-s0 epoch 1/1" in printed
    assert f"saved {out / CHECKPOINT_FILE} (epoch 1/1, test error" in printed

    assert main(["train", "--defense", "reference", "--epochs", "1", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err

    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "resuming at reference-fc-mnist-5k-s0 epoch 2/2" in capsys.readouterr().out
    assert load_checkpoint(out / CHECKPOINT_FILE).epoch == 2
    assert len((out / METRICS_FILE).read_text().splitlines()) == 2
    assert json.loads((out / "config.json").read_text())["epochs"] == 2

    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "already complete (2/2 epochs)" in capsys.readouterr().out

    assert main(["train", "--out", str(out), "--resume", "--defense", "vat"]) == 2
    assert "--defense vat differs from the run being resumed (reference)" in capsys.readouterr().err


def test_diverging_run_exits_3_with_the_reason(tmp_path, capsys):
    code = main(
        [
            "train",
            "--defense",
            "reference",
            "--epochs",
            "1",
            "--lr",
            "1e9",
            "--out",
            str(tmp_path),
            *TINY,
        ]
    )
    assert code == 3
    assert "training diverged at epoch 1" in capsys.readouterr().err
    assert not (tmp_path / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--defense", "pgd", "--net", "fc"], "unknown defense 'pgd'"),
        (["--defense", "at", "--net", "vgg"], "unknown network 'vgg'"),
        (["--defense", "at"], "--net required"),
        (["--defense", "at", "--net", "fc", "--dataset", "svhn"], "unknown dataset 'svhn'"),
        (["--defense", "at", "--net", "fc", "--param", "eps"], "bad parameter 'eps'"),
        (["--defense", "at", "--net", "fc", "--param", "eps=big"], "eps='big'"),
        (["--defense", "at", "--net", "fc", "--epochs", "0"], "epochs must be positive"),
        (["--defense", "at", "--net", "fc", "--device", "tpu"], "unknown device 'tpu'"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_input_exits_2_naming_the_value(arguments, message, tmp_path, capsys):
    assert (
        main(
            ["train", *arguments, "--out", str(tmp_path / "x")]
            if "--resume" not in arguments
            else ["train", *arguments]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
