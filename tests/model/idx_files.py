"""Writing small IDX files (the MNIST format) for the dataset tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, compress: bool = True
) -> None:
    """`{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
        name = f"{prefix}-{kind}-idx{dims}-ubyte"
        payload = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)


def random_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8), rng.integers(
        0, 10, size=count, dtype=np.uint8
    )


def write_mnist_folder(
    folder: Path, *, train: int = 30, test: int = 12, compress: bool = True
) -> dict[str, tuple]:
    """A complete MNIST-style folder of random digits; returns the arrays written per split."""
    written = {}
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        images, labels = random_split(count, seed=count)
        write_split(folder, prefix, images, labels, compress=compress)
        written[split] = (images, labels)
    return written
