"""What a training run is: one frozen `TrainConfig`, built from a preset plus overrides.

Presets:
- `paper`: the paper's settings (section 5): MNIST, 100 epochs, batch 100, each defense's
  optimizer and schedule as published (the adversary critic: Adam beta1 0.5, lr 5e-4,
  halved every 40 epochs; baselines: Adam 1e-3, x0.95 per epoch as in the authors' code).
- `cpu`: the same defenses and hyperparameters on mnist-5k for 20 epochs, so a run
  finishes in minutes on a laptop CPU. The learning-rate schedule is compressed to the
  shorter run (same number of decays per run, same final learning rate), because on 4,000
  images the paper's per-epoch schedule would barely move.

The config is stored in every checkpoint (`dataclasses.asdict`), so a resumed run and every
table built from it know exactly how it was trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.names import canonical_defense, canonical_network
from model.datasets import canonical_dataset_name
from model.defenses import defense_class, resolve_params
from model.defenses.base import OptimizerSettings

PAPER_EPOCHS = 100


@dataclass(frozen=True)
class Preset:
    """Defaults a preset puts in a config; overrides win."""

    name: str
    dataset: str
    epochs: int
    batch_size: int
    description: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "paper", "mnist", PAPER_EPOCHS, 100, "the paper's settings: 100 epochs, batch 100"
    ),
    "cpu": Preset(
        "cpu", "mnist-5k", 20, 100, "mnist-5k, 20 epochs, batch 100, schedule compressed"
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    defense: str
    network: str
    dataset: str
    seed: int
    preset: str
    epochs: int
    batch_size: int
    optimizer: OptimizerSettings
    defense_params: dict[str, Any] = field(default_factory=dict)
    # Train on the first N training images only (tests, benchmarks); None = all.
    train_limit: int | None = None
    # Test error every N epochs (0: only after the last epoch).
    eval_every: int = 1
    # |loss term| above this counts as divergence, like a NaN.
    divergence_threshold: float = 1e4

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["optimizer"]["betas"] = list(self.optimizer.betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        values = dict(data)
        optimizer = dict(values.pop("optimizer"))
        optimizer["betas"] = tuple(optimizer["betas"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(optimizer=OptimizerSettings(**optimizer), **values)

    def params(self) -> Any:
        """The defense's hyperparameters as its dataclass."""
        return resolve_params(self.defense, self.network, self.defense_params)

    def total_epochs(self) -> int:
        """Training epochs plus the defense's pretraining epochs."""
        return self.epochs + getattr(self.params(), "pretrain_epochs", 0)

    def run_name(self) -> str:
        return f"{self.defense}-{self.network}-{self.dataset}-s{self.seed}"


def compress_schedule(paper: OptimizerSettings, epochs: int) -> OptimizerSettings:
    """The paper's step schedule fitted to `epochs`: as many decays per run and the same
    final learning rate as the paper's 100 epochs."""
    if epochs >= PAPER_EPOCHS:
        return paper
    every = max(1, round(paper.decay_every * epochs / PAPER_EPOCHS))
    decays_paper = PAPER_EPOCHS / paper.decay_every
    decays_here = epochs / every
    factor = paper.decay_factor ** (decays_paper / decays_here)
    return dataclasses.replace(paper, decay_every=every, decay_factor=factor)


def build_config(
    *,
    defense: str,
    network: str,
    seed: int = 0,
    preset: str = "cpu",
    dataset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    params: Mapping[str, Any] | None = None,
    train_limit: int | None = None,
    eval_every: int = 1,
) -> TrainConfig:
    """A validated config; ValueError names the bad value and the accepted ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    defense = canonical_defense(defense)
    network = canonical_network(network)
    epochs = chosen.epochs if epochs is None else epochs
    batch_size = chosen.batch_size if batch_size is None else batch_size
    for label, value in (("epochs", epochs), ("batch size", batch_size), ("seed", seed + 1)):
        if value < 1:
            raise ValueError(f"{label} must be positive, got {value}")
    if train_limit is not None and train_limit < batch_size:
        raise ValueError(f"train limit {train_limit} is smaller than one batch ({batch_size})")
    if eval_every < 0:
        raise ValueError(f"eval-every must be >= 0, got {eval_every}")
    resolved = resolve_params(defense, network, params)
    optimizer = defense_class(defense).default_optimizer
    if preset == "cpu":
        optimizer = compress_schedule(optimizer, epochs)
    if lr is not None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        optimizer = dataclasses.replace(optimizer, lr=lr)
    return TrainConfig(
        defense=defense,
        network=network,
        dataset=canonical_dataset_name(dataset or chosen.dataset),
        seed=seed,
        preset=preset,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        defense_params=dataclasses.asdict(resolved),
        train_limit=train_limit,
        eval_every=eval_every,
    )
