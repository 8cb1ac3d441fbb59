"""Downloading dataset files with checksum verification.

Each file is fetched into a hidden temporary file in the target folder, its MD5 compared
with the published one, and only then renamed into place: an interrupted or tampered
download never leaves a file under the final name that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from model.datasets.idx import DatasetError

_BLOCK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_files(
    base_url: str, folder: Path, checksums: Mapping[str, str], *, timeout: float = 60.0
) -> list[Path]:
    """Fetch every `name` in `checksums` from `base_url/name` into `folder`.

    Files already present with the right checksum are kept (a re-run costs nothing);
    present files with a wrong checksum are downloaded again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fetched = []
    for name, md5 in checksums.items():
        target = folder / name
        if not (target.is_file() and file_md5(target) == md5):
            _download_one(f"{base_url.rstrip('/')}/{name}", target, md5, timeout)
        fetched.append(target)
    return fetched


def _download_one(url: str, target: Path, md5: str, timeout: float) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(_BLOCK), b""):
                out.write(block)
        actual = file_md5(tmp)
        if actual != md5:
            raise DatasetError(f"checksum mismatch for {url}: MD5 {actual}, expected {md5}")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"cannot download {url}: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)
