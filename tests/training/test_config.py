"""Presets, schedules and hyperparameter overrides."""

from __future__ import annotations

import pytest

from model.defenses import OptimizerSettings, parse_assignments
from model.training import PRESETS, TrainConfig, build_config, compress_schedule


def test_paper_preset_is_the_papers_settings():
    ours = build_config(defense="ours", network="lenet-5", preset="paper")
    assert (ours.dataset, ours.epochs, ours.batch_size, ours.network) == (
        "mnist",
        100,
        100,
        "lenet5",
    )
    assert ours.optimizer == OptimizerSettings(
        lr=5e-4, betas=(0.5, 0.999), decay_every=40, decay_factor=0.5
    )
    params = ours.params()
    assert (params.lam, params.cycle, params.grad_penalty, params.attack_steps) == (
        0.1,
        1e-2,
        10.0,
        5,
    )
    assert (params.critic_lr, params.pretrain_epochs, params.confidence_decay) == (1e-3, 1, 0.5)
    assert ours.total_epochs() == 101
    assert build_config(defense="at", network="fc", preset="paper").params().eps == 0.1
    assert build_config(defense="vat", network="fc", preset="paper").params().eps == 2.0
    assert build_config(defense="mm", network="fc", preset="paper").params().lam == 0.1


def test_cpu_preset_compresses_the_schedule_to_its_epochs():
    cpu = build_config(defense="ours", network="fc", preset="cpu")
    assert (cpu.dataset, cpu.epochs) == (PRESETS["cpu"].dataset, PRESETS["cpu"].epochs)
    # 20 epochs: halve every 8 epochs -> 2.5 halvings per run, as the paper's 100 / 40.
    assert cpu.optimizer.decay_every == 8
    assert cpu.optimizer.decay_factor == pytest.approx(0.5)
    baseline = compress_schedule(OptimizerSettings(lr=1e-3, decay_every=1, decay_factor=0.95), 20)
    assert baseline.decay_factor**20 == pytest.approx(0.95**100)


def test_config_survives_the_checkpoint_format():
    config = build_config(
        defense="vat", network="fc", seed=3, params=parse_assignments(["eps=1.5"])
    )
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.params().eps == 1.5
    assert config.run_name() == "vat-fc-mnist-5k-s3"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"preset": "gpu"}, "unknown preset 'gpu'"),
        ({"network": "resnet"}, "unknown network 'resnet'"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"epochs": 0}, "epochs must be positive"),
        ({"batch_size": -5}, "batch size must be positive"),
        ({"lr": 0.0}, "learning rate must be positive"),
        ({"train_limit": 10}, "smaller than one batch"),
        ({"params": {"cycle": "lots"}}, "cycle='lots': expected float"),
    ],
)
def test_bad_settings_are_named(options, message):
    arguments = {"defense": "ours", "network": "fc", **options}
    with pytest.raises(ValueError, match=message):
        build_config(**arguments)


@pytest.mark.parametrize("text", ["eps", "=3", "eps="])
def test_bad_parameter_syntax_is_named(text):
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_assignments([text])
