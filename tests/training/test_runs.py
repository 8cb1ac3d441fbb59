"""Training runs end to end: checkpoints describe themselves, resume is exact, divergence
stops the run with the last good checkpoint intact."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from contract.names import DEFENSES
from model.checkpoint import load_checkpoint, load_classifier, save_checkpoint
from model.training import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RunFolderError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    train,
)
from tests.training.conftest import tiny_config


@pytest.mark.parametrize("name", DEFENSES)
def test_checkpoint_round_trips_for_every_defense(name, tiny_data, tmp_path):
    config = tiny_config(name, eval_every=0)
    trainer = Trainer(config, tmp_path, data=tiny_data, progress=False)
    result = trainer.run()

    assert result.checkpoint == tmp_path / CHECKPOINT_FILE
    checkpoint = load_checkpoint(result.checkpoint)
    assert (checkpoint.defense, checkpoint.network, checkpoint.seed) == (name, "fc", 0)
    assert checkpoint.epoch == trainer.total_epochs == config.epochs + (1 if name == "ours" else 0)
    assert TrainConfig.from_dict(checkpoint.config) == config
    assert checkpoint.metrics["complete"] is True
    assert checkpoint.metrics["test_error"] == pytest.approx(result.test_error)
    assert set(checkpoint.optimizer_states["optimizers"]) >= {"classifier"}

    classifier, _ = load_classifier(result.checkpoint)
    images = tiny_data.test_images[:50]
    with torch.no_grad():
        assert torch.equal(classifier(images), trainer.net.eval()(images))
    if name == "ours":
        assert checkpoint.critic_state is not None
        assert checkpoint.extra_state["class_confidence"].shape == (10,)
        assert bool(
            (
                (checkpoint.extra_state["class_confidence"] > 0)
                & (checkpoint.extra_state["class_confidence"] <= 1)
            ).all()
        )

    log = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(1, trainer.total_epochs + 1))
    assert log[-1]["test_error"] == pytest.approx(result.test_error)


class Interrupt(Exception):
    pass


def _stop_after(epoch_to_stop: int):
    def callback(epoch: int, row: dict) -> None:
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt

    return callback


def test_interrupted_run_resumes_exactly_where_it_stopped(tiny_data, tmp_path):
    """Kill the adversary-critic run after its first training epoch, resume it, and get
    bit-for-bit the weights, critic and class confidences of an uninterrupted run."""
    config = tiny_config("ours", epochs=2, train_limit=50, eval_every=0)
    straight = Trainer(config, tmp_path / "straight", data=tiny_data, progress=False)
    straight.run()

    with pytest.raises(KeyboardInterrupt):
        train(
            config,
            tmp_path / "resumed",
            data=tiny_data,
            progress=False,
            on_epoch_end=_stop_after(2),
        )
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE).epoch == 2
    resumed = Trainer(config, tmp_path / "resumed", data=tiny_data, progress=False, resume=True)
    assert resumed.start_epoch == 2
    resumed.run()

    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_FILE)
    b = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE)
    for key, value in a.classifier_state.items():
        assert torch.equal(value, b.classifier_state[key]), key
    for key, value in a.critic_state.items():
        assert torch.equal(value, b.critic_state[key]), key
    assert torch.equal(a.extra_state["class_confidence"], b.extra_state["class_confidence"])
    assert [row["loss"] for row in a.metrics["history"]] == [
        row["loss"] for row in b.metrics["history"]
    ]
    lines = (tmp_path / "resumed" / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_run_folder_is_never_overwritten_or_resumed_with_other_settings(tiny_data, tmp_path):
    config = tiny_config("reference", eval_every=0)
    train(config, tmp_path, data=tiny_data, progress=False)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run"):
        Trainer(config, tmp_path, data=tiny_data, progress=False)
    with pytest.raises(RunFolderError, match="seed: saved 0 vs requested 1"):
        Trainer(
            tiny_config("reference", seed=1, eval_every=0), tmp_path, data=tiny_data, resume=True
        )
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    # More epochs may be added to a finished run.
    longer = Trainer(
        tiny_config("reference", epochs=2, eval_every=0),
        tmp_path,
        data=tiny_data,
        resume=True,
        progress=False,
    )
    assert (longer.start_epoch, longer.total_epochs) == (1, 2)


def test_divergence_stops_before_the_weights_change(tiny_data, tmp_path):
    config = tiny_config("reference", lr=1e9, eval_every=0)
    trainer = Trainer(config, tmp_path, data=tiny_data, progress=False)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+: (loss|nll)"):
        trainer.run()
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters())
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_divergence_mid_run_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    def poison(epoch: int, row: dict) -> None:
        with torch.no_grad():
            next(trainer.net.parameters()).fill_(float("nan"))

    trainer = Trainer(
        tiny_config("vat", epochs=3, eval_every=0),
        tmp_path,
        data=tiny_data,
        progress=False,
        on_epoch_end=poison,
    )
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1"):
        trainer.run()
    kept = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert kept.epoch == 1
    assert all(torch.isfinite(v).all() for v in kept.classifier_state.values())


def test_a_damaged_checkpoint_is_refused_not_resumed(tiny_data, tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        Trainer(tiny_config("reference"), tmp_path, data=tiny_data, resume=True)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == b"not a checkpoint"


def test_checkpoint_save_is_atomic(tiny_data, tmp_path):
    """A save that fails half-way leaves the previous checkpoint readable."""
    config = tiny_config("reference", eval_every=0)
    train(config, tmp_path, data=tiny_data, progress=False)
    good = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    good.metrics["unpicklable"] = lambda: None
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_checkpoint(good, tmp_path / CHECKPOINT_FILE)
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE).epoch == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")] == []
