"""Reading the IDX files MNIST and Fashion-MNIST ship in, with checks that name the problem.

IDX is a tiny format (a magic number, the dimensions, then raw bytes). A truncated
download or a file of the wrong kind would otherwise surface as a reshape error deep in
NumPy, so every inconsistency becomes a `DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# Third byte of the magic number: the element type. MNIST uses unsigned bytes only.
_UBYTE = 0x08


class DatasetError(ValueError):
    """A dataset that cannot be loaded: unknown name, missing folder, corrupt or mismatched file."""


def read_idx(path: Path, *, expected_ndim: int) -> np.ndarray:
    """The array stored in an IDX file (plain or gzip-compressed), as uint8."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if len(raw) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or ndim != expected_ndim:
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes with {expected_ndim} dimension(s) "
            f"(magic {raw[:4].hex()})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path} holds {len(raw) - header} data bytes but its header promises "
            f"{expected} for shape {shape} (truncated or corrupt file)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path:
    """`folder/stem` or `folder/stem.gz`, whichever exists; DatasetError if neither does."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder} has neither {stem} nor {stem}.gz")


def read_idx_pair(folder: Path, images_stem: str, labels_stem: str, num_classes: int):
    """Images (N, 28, 28) and labels (N,) from one split's two IDX files, checked for agreement."""
    images_path = find_idx_file(folder, images_stem)
    labels_path = find_idx_file(folder, labels_stem)
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path} holds {images.shape[1:]} images; expected 28x28")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetError(
            f"{labels_path} has label {int(labels.max())}; expected 0..{num_classes - 1}"
        )
    return images, labels
