"""Training runs: presets and config, the loop, checkpoints and resume, DDP, divergence.

from model.training import build_config, train
config = build_config(defense="ours", network="fc", preset="cpu", seed=0)
result = train(config, "runs/ours-fc-s0")      # result.checkpoint -> runs/ours-fc-s0/checkpoint.pt
"""

from model.training.config import PRESETS, Preset, TrainConfig, build_config, compress_schedule
from model.training.divergence import DivergenceGuard, TrainingDiverged
from model.training.loop import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RunFolderError,
    Trainer,
    TrainingData,
    TrainResult,
    train,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "PRESETS",
    "DivergenceGuard",
    "Preset",
    "RunFolderError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "TrainingDiverged",
    "build_config",
    "compress_schedule",
    "train",
]
