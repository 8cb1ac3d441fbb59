"""MNIST and Fashion-MNIST: the two datasets distributed as four IDX files each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.datasets.download import download_files
from model.datasets.idx import DatasetError, read_idx_pair

SPLIT_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
# Published MD5s of the gzip files (the same as on Yann LeCun's page and torchvision's mirror).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DEFAULT_MNIST_ROOT = Path.home() / ".cache" / "advcritic" / "mnist"
# Debian's dataset-fashion-mnist package puts the files here.
DEFAULT_FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset lives by default and, if it can be fetched, from where."""

    name: str
    default_root: Path
    base_url: str | None = None
    checksums: dict[str, str] | None = None


MNIST = IdxSource("mnist", DEFAULT_MNIST_ROOT, MNIST_URL, MNIST_MD5)
FASHION_MNIST = IdxSource("fashion-mnist", DEFAULT_FASHION_ROOT)


def download_mnist(
    root: str | Path | None = None,
    *,
    base_url: str = MNIST_URL,
    checksums: dict[str, str] | None = None,
) -> Path:
    """Fetch MNIST's four files into `root`, each checked against its MD5 before it is kept.

    `checksums` defaults to the published MD5s; a mirror serving anything else is rejected.
    Returns the folder, ready for `load_dataset("mnist", split, root)`.
    """
    folder = Path(root) if root is not None else MNIST.default_root
    download_files(base_url, folder, checksums if checksums is not None else MNIST_MD5)
    return folder


def load_idx_split(
    source: IdxSource,
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    base_url: str | None = None,
    num_classes: int = 10,
):
    """uint8 images (N, 28, 28) and labels (N,) of one split, downloading first if asked."""
    folder = Path(root) if root is not None else source.default_root
    if download:
        if source.checksums is None:
            raise DatasetError(
                f"{source.name} cannot be downloaded; give a folder with its IDX files"
            )
        download_files(base_url or source.base_url or "", folder, source.checksums)
    if not folder.is_dir():
        hint = " (or download it with download=True / --download)" if source.checksums else ""
        raise DatasetError(f"{source.name}: folder {folder} does not exist{hint}")
    images_stem, labels_stem = SPLIT_STEMS[split]
    return read_idx_pair(folder, images_stem, labels_stem, num_classes)
