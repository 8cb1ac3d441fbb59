"""Self-describing checkpoints: the file alone says how to rebuild and resume a run.

A checkpoint holds the classifier's (and, for the adversary critic, the critic's) weights,
the optimizer states, the full training config, the epoch reached, the metrics so far and
whatever extra state the defense keeps (e.g. the running class confidences). Loading
takes the architecture from the file, never from the caller.

Files are written atomically (temporary file + rename), so an interrupted save leaves
the previous checkpoint intact, which is what resuming after a crash relies on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contract.names import canonical_network
from model.networks import build_classifier

CHECKPOINT_FORMAT = "advcritic-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or not one of ours."""


@dataclass
class Checkpoint:
    """Everything needed to rebuild the classifier and to resume its training."""

    network: str
    dataset: str
    defense: str
    seed: int
    epoch: int
    classifier_state: dict[str, torch.Tensor]
    num_classes: int = 10
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    critic_state: dict[str, torch.Tensor] | None = None
    optimizer_states: dict[str, Any] = field(default_factory=dict)
    extra_state: dict[str, Any] = field(default_factory=dict)

    def build_classifier(self, device: torch.device | str = "cpu") -> nn.Module:
        """The classifier with this checkpoint's weights, in eval mode, on `device`."""
        net = build_classifier(self.network, num_classes=self.num_classes)
        net.load_state_dict(self.classifier_state)
        return net.to(device).eval()

    def describe(self) -> str:
        return f"{self.defense}/{self.network}/{self.dataset} seed {self.seed} epoch {self.epoch}"


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike[str]) -> Path:
    """Write `checkpoint` to `path` atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **asdict(checkpoint)}
    payload["network"] = canonical_network(checkpoint.network)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read and validate a checkpoint; CheckpointError says what is wrong with the file."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint not found: {source}")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"cannot read checkpoint {source}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not an advcritic checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint version {payload.get('version')!r}; "
            f"this code reads version {CHECKPOINT_VERSION}"
        )
    fields = {name: payload[name] for name in Checkpoint.__dataclass_fields__ if name in payload}
    try:
        return Checkpoint(**fields)
    except TypeError as error:
        raise CheckpointError(f"{source} lacks required fields: {error}") from error


def load_classifier(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """The trained classifier (eval mode) and its checkpoint record."""
    checkpoint = load_checkpoint(path, map_location="cpu")
    return checkpoint.build_classifier(device), checkpoint


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, the identity recorded in stimulus bundles and studies."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
