"""The ensemble annotator: independently trained classifiers that no attack ever saw.

Members differ from the attacked model in seed and in training (random deformations, see
`augment`), and half of them in architecture (LeNet-5 beside the paper's FC). The ensemble
labels an image with the argmax of its members' mean softmax. Adversarial examples do
transfer between networks, most of all between networks of the same architecture, so the
ensemble can be fooled where a person would not be: that is why the k-NN annotator stands
beside it and why its FC and LeNet-5 halves are worth comparing.

Members are cached: each is saved as `<architecture>-s<seed>-<recipe digest>.pt` under the
annotators folder, with its recipe and the fingerprint of the digits it was trained on, and
is loaded instead of retrained when both match.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contract.names import canonical_network
from model.networks import build_classifier
from model.proxy.augment import Augmentation, augment
from model.proxy.defaults import DEFAULT_EPOCHS, ENSEMBLE_NAME

MEMBER_FORMAT = "advcritic-proxy-member"
# What torch.load and load_state_dict raise for a damaged, truncated or foreign file.
UNREADABLE = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    pickle.UnpicklingError,
)


@dataclass(frozen=True)
class MemberRecipe:
    """How one ensemble member is trained (everything that changes its weights)."""

    network: str
    seed: int
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 100
    lr: float = 1e-3
    augmentation: Augmentation = field(default_factory=Augmentation)

    @property
    def name(self) -> str:
        return f"{self.network}-s{self.seed}"

    def describe(self) -> dict[str, object]:
        return asdict(self)


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the training digits and labels (what a cached member was trained on)."""
    digest = hashlib.sha256()
    digest.update(images.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    digest.update(labels.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def member_path(folder: Path, recipe: MemberRecipe, fingerprint: str) -> Path:
    key = json.dumps({"recipe": recipe.describe(), "data": fingerprint}, sort_keys=True)
    return folder / f"{recipe.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def train_member(recipe: MemberRecipe, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """Adam on cross-entropy over randomly deformed digits; seeded, returns eval mode."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    net = build_classifier(recipe.network)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    net.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            batch = augment(images[rows], recipe.augmentation, generator)
            loss = F.cross_entropy(net(batch), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def _save(path: Path, net: nn.Module, recipe: MemberRecipe, fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MEMBER_FORMAT,
        "recipe": recipe.describe(),
        "data": fingerprint,
        "state": net.state_dict(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, recipe: MemberRecipe, fingerprint: str) -> nn.Module | None:
    """The cached member, or None if absent, unreadable or trained otherwise."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if (
            payload.get("format") != MEMBER_FORMAT
            or payload.get("data") != fingerprint
            or json.dumps(payload.get("recipe"), sort_keys=True)
            != json.dumps(recipe.describe(), sort_keys=True)
        ):
            return None
        net = build_classifier(recipe.network)
        net.load_state_dict(payload["state"])
        return net.eval()
    except UNREADABLE:
        return None  # a damaged or foreign file: retrain and overwrite it


def obtain_members(
    recipes: Sequence[MemberRecipe],
    images: torch.Tensor,
    labels: torch.Tensor,
    folder: Path,
    *,
    log: Callable[[str], None] = lambda message: None,
) -> list[nn.Module]:
    """Each recipe's member from `folder`, trained (and saved there) when not cached."""
    fingerprint = data_fingerprint(images, labels)
    members = []
    for recipe in recipes:
        path = member_path(folder, recipe, fingerprint)
        net = _load(path, recipe, fingerprint) if path.is_file() else None
        if net is None:
            log(f"training ensemble member {recipe.name} ({recipe.epochs} epochs) -> {path}")
            net = train_member(recipe, images, labels)
            _save(path, net, recipe, fingerprint)
        else:
            log(f"ensemble member {recipe.name}: loaded {path}")
        members.append(net)
    return members


def parse_members(text: str) -> list[tuple[str, int]]:
    """'fc-s101,lenet5-s102' -> [('fc', 101), ('lenet5', 102)]; ValueError naming a bad item."""
    members = []
    for item in (part.strip() for part in text.split(",")):
        network, sep, seed = item.rpartition("-s")
        if not sep or not seed.isdigit():
            raise ValueError(f"ensemble member {item!r}: expected NETWORK-sSEED, e.g. fc-s101")
        members.append((canonical_network(network), int(seed)))
    if len(set(members)) != len(members):
        raise ValueError(f"ensemble members repeat: {text!r}")
    return members


class EnsembleAnnotator:
    """Labels images with the argmax of the members' mean softmax probabilities."""

    def __init__(self, members: Sequence[nn.Module], *, name: str = ENSEMBLE_NAME) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.name = name

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        parts = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            parts.append(
                torch.stack([F.softmax(m(batch), dim=1) for m in self.members]).mean(dim=0)
            )
        return torch.cat(parts)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).argmax(dim=1)
