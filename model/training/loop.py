"""The training loop: feed batches to a defense, log, checkpoint, resume.

A run lives in one folder:

    checkpoint.pt   the latest finished epoch (weights, optimizers, config, history, the
                    defense's extra state); the final model once the run is complete
    metrics.jsonl   one line of averaged metrics per finished epoch
    config.json     the run's config, for people and scripts

A checkpoint is written (atomically) after every epoch, so an interrupted run loses at most
the epoch in progress, and `resume=True` continues from the last finished epoch exactly as if
it had never stopped: data order and noise are derived from (seed, epoch), not from
generator state.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.defenses import Defense, build_defense
from model.metrics import test_error
from model.networks import build_classifier
from model.training.config import TrainConfig
from model.training.distributed import DistributedContext
from model.training.divergence import DivergenceGuard
from model.training.metrics_log import EpochMeter, MetricsLog, format_epoch
from model.training.seeding import derived_seed, enable_determinism, epoch_order, seed_everything

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
# Digits of each split the defense's own diagnostics are measured on (`Defense.monitor`).
MONITOR_SAMPLE = 500

# Called on the main process after each epoch's checkpoint is on disk.
EpochCallback = Callable[[int, dict[str, Any]], None]


class RunFolderError(ValueError):
    """The output folder holds a run that this request cannot start or continue."""


@dataclass
class TrainResult:
    checkpoint: Path
    epoch: int
    total_epochs: int
    test_error: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingData:
    """A dataset's train and test splits: images (N, 1, 28, 28) in [0, 1], int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @classmethod
    def load(cls, dataset: str, root: str | Path | None = None) -> TrainingData:
        from model.datasets import load_dataset

        train = load_dataset(dataset, "train", root).tensors
        test = load_dataset(dataset, "test", root).tensors
        return cls(train[0], train[1].long(), test[0], test[1].long())

    def limited(self, limit: int | None) -> TrainingData:
        """Only a fixed random subset of `limit` training images (the same for every run and
        seed): splits may be stored sorted by class, so their first N would be unfair."""
        if limit is None or limit >= len(self.train_images):
            return self
        keep = torch.randperm(len(self.train_images), generator=torch.Generator().manual_seed(0))
        keep = keep[:limit].sort().values
        return replace(
            self, train_images=self.train_images[keep], train_labels=self.train_labels[keep]
        )

    def to(self, device: torch.device) -> TrainingData:
        return TrainingData(*(getattr(self, f.name).to(device) for f in fields(self)))


def reconcile_resume(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The config to continue with: the saved one, with more epochs if requested.

    Anything else that differs is an error: continuing a run under other settings would
    produce a checkpoint that describes neither. (The schedule a preset derived from the
    epoch count is kept as saved when epochs are added.)"""

    def comparable(config: TrainConfig) -> dict[str, Any]:
        data = config.to_dict()
        data.pop("epochs")
        data["optimizer"] = {key: data["optimizer"][key] for key in ("lr", "betas")}
        return data

    mine, theirs = comparable(saved), comparable(requested)
    differing = [name for name in mine if mine[name] != theirs[name]]
    if differing:
        details = ", ".join(
            f"{name}: saved {mine[name]!r} vs requested {theirs[name]!r}" for name in differing
        )
        raise RunFolderError(f"cannot resume with different settings ({details})")
    if requested.epochs < saved.epochs:
        raise RunFolderError(
            f"cannot resume with fewer epochs ({requested.epochs}) "
            f"than the run has ({saved.epochs})"
        )
    return replace(saved, epochs=requested.epochs)


class Trainer:
    """Trains one (defense, network, dataset, seed) run into `out_dir`."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        resume: bool = False,
        progress: bool = True,
        on_epoch_end: EpochCallback | None = None,
        data_root: str | Path | None = None,
        data: TrainingData | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.data_root = data_root
        self.data = data
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.context = DistributedContext.from_launcher(device)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        saved = self._existing_checkpoint(resume)
        self.config = (
            reconcile_resume(TrainConfig.from_dict(saved.config), config) if saved else config
        )
        self._build(saved)
        self.log = MetricsLog(self.out_dir / METRICS_FILE)

    def _existing_checkpoint(self, resume: bool) -> Checkpoint | None:
        path = self.out_dir / CHECKPOINT_FILE
        if not path.exists():
            return None
        if not resume:
            raise RunFolderError(
                f"{self.out_dir} already holds a run ({path}); "
                "pass --resume (resume=True) to continue it "
                "or choose another output folder"
            )
        return load_checkpoint(path, map_location=self.context.device)

    def _build(self, saved: Checkpoint | None) -> None:
        config, context = self.config, self.context
        seed_everything(config.seed)
        if context.device.type == "cuda":
            enable_determinism()  # CPU kernels are deterministic already
        data = self.data or TrainingData.load(config.dataset, self.data_root)
        data = data.limited(config.train_limit).to(context.device)
        self.images, self.labels = data.train_images, data.train_labels
        self.test_images, self.test_labels = data.test_images, data.test_labels
        if len(self.images) < config.batch_size:
            raise ValueError(
                f"{len(self.images)} training images are fewer than one batch ({config.batch_size})"
            )
        if config.batch_size % context.world_size:
            raise ValueError(
                f"batch size {config.batch_size} is not divisible "
                f"by the {context.world_size} processes"
            )
        self.net = build_classifier(config.network).to(context.device).train()
        self.guard = DivergenceGuard(config.divergence_threshold, context.any)
        self.defense: Defense = build_defense(
            config.defense,
            self.net,
            config.params(),
            config.optimizer,
            replicate=context.replicate,
            guard=self.guard,
            all_reduce=context.all_reduce,
        )
        if saved is not None:
            self.net.load_state_dict(saved.classifier_state)
            self.defense.load_state(saved.optimizer_states, saved.critic_state, saved.extra_state)
            self.start_epoch = saved.epoch
            self.history = list(saved.metrics.get("history", []))

    @property
    def total_epochs(self) -> int:
        return self.config.epochs + self.defense.pretrain_epochs

    def run(self) -> TrainResult:
        """Trains the remaining epochs; returns where the final checkpoint is."""
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / CONFIG_FILE).write_text(
                json.dumps(self.config.to_dict(), indent=2) + "\n"
            )
            self.log.rewrite(self.history)
        try:
            for epoch in range(self.start_epoch + 1, self.total_epochs + 1):
                row = self._train_epoch(epoch)
                self._finish_epoch(epoch, row)
        finally:
            self.context.close()
        last = self.history[-1] if self.history else {}
        return TrainResult(
            checkpoint=self.out_dir / CHECKPOINT_FILE,
            epoch=max(self.start_epoch, len(self.history)),
            total_epochs=self.total_epochs,
            test_error=last.get("test_error"),
            history=self.history,
        )

    def _batches(self, epoch: int) -> torch.Tensor:
        order = epoch_order(len(self.images), self.config.seed, epoch, self.context.device)
        usable = len(order) - len(order) % self.config.batch_size
        return order[:usable].view(-1, self.config.batch_size)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        pretraining = epoch <= self.defense.pretrain_epochs
        torch.manual_seed(derived_seed(self.config.seed, epoch, self.context.rank))
        meter = EpochMeter()
        started = time.perf_counter()
        learning_rates = self.defense.learning_rates()
        batches = self._batches(epoch)
        bar = tqdm(
            batches,
            desc=f"{self.config.defense} epoch {epoch}/{self.total_epochs}",
            disable=not (self.progress and self.context.is_main),
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(bar, start=1):
            shard = self.context.shard(batch)
            self.guard.at(epoch, step)
            metrics = self.defense.train_step(
                self.images[shard], self.labels[shard], pretraining=pretraining
            )
            meter.add(metrics)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
        self.defense.end_epoch(pretraining=pretraining)
        DivergenceGuard.check_weights(self.net, epoch)
        evaluate = epoch == self.total_epochs or (
            self.config.eval_every > 0 and epoch % self.config.eval_every == 0
        )
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "total_epochs": self.total_epochs,
            "phase": "pretrain" if pretraining else "train",
            "steps": len(batches),
            "seconds": seconds,
            "lr": learning_rates,
            **meter.means(self.context.all_reduce),
            "test_error": self._test_error() if evaluate else None,
            **(self._monitor() if evaluate and not pretraining else {}),
        }

    def _monitor(self) -> dict[str, float]:
        """The defense's diagnostics on fixed samples of training and test digits (the
        same on every process, so no reduction is needed)."""
        sample = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(0))
        sample = sample[:MONITOR_SAMPLE].to(self.images.device)
        train = (self.images[sample], self.labels[sample])
        held_out = (self.test_images[:MONITOR_SAMPLE], self.test_labels[:MONITOR_SAMPLE])
        return self.defense.monitor(train, held_out)

    def _test_error(self) -> float:
        # The networks have no dropout or batch norm, so train mode predicts as eval mode would.
        return test_error(self.net, self.test_images, self.test_labels, device=self.context.device)

    def _finish_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.context.is_main:
            save_checkpoint(self._checkpoint(epoch), self.out_dir / CHECKPOINT_FILE)
            self.log.append(row)
            tqdm.write(format_epoch(row), file=sys.stdout)
        self.context.barrier()
        if self.on_epoch_end is not None and self.context.is_main:
            self.on_epoch_end(epoch, row)

    def _checkpoint(self, epoch: int) -> Checkpoint:
        config = self.config
        return Checkpoint(
            network=config.network,
            dataset=config.dataset,
            defense=config.defense,
            seed=config.seed,
            epoch=epoch,
            classifier_state={k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            config=config.to_dict(),
            metrics={
                "history": self.history,
                "total_epochs": self.total_epochs,
                "complete": epoch == self.total_epochs,
                "test_error": self.history[-1].get("test_error"),
            },
            critic_state=self.defense.critic_state(),
            optimizer_states=self.defense.optimizer_state(),
            extra_state=self.defense.extra_state(),
        )


def train(config: TrainConfig, out_dir: str | Path, **options: Any) -> TrainResult:
    """Trains `config` into `out_dir` (see the module docstring for the folder layout).

    Options are `Trainer`'s: device, resume, progress, on_epoch_end, data_root (where the
    dataset's files are; not part of the config, so a run can be resumed on a machine that
    keeps its data elsewhere) and data (splits already in memory, of `config.dataset`)."""
    return Trainer(config, out_dir, **options).run()
