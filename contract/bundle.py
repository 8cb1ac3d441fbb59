"""The stimulus bundle: the on-disk contract between `advcritic stimuli` and the study server.

A bundle is a folder::

    bundle.json      what the bundle is (format, version, defense, network, seed, checkpoint
                     hash, attack settings, counts) and the SHA-256 of the manifest
    manifest.jsonl   one JSON object per stimulus (`StimulusRecord`), in id order
    images/<id>.png  28x28 8-bit grayscale PNGs, exactly what the model was re-checked on

This module is deliberately free of PyTorch so the server can read bundles in a lean
install. Writing is atomic: the bundle is assembled in a hidden sibling folder and renamed
into place, so a crash leaves no half bundle under the final name. Reading verifies the
version, the manifest hash, every image's hash and decodability, and the agreement between
manifest rows and bundle.json; any mismatch is a `BundleError` naming the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from PIL import Image

BUNDLE_FORMAT = "advcritic-stimulus-bundle"
BUNDLE_VERSION = 1
SUPPORTED_BUNDLE_VERSIONS = frozenset({1})
META_FILE = "bundle.json"
MANIFEST_FILE = "manifest.jsonl"
IMAGE_DIR = "images"
IMAGE_SIZE = (28, 28)

StimulusKind = Literal["adversarial", "catch"]


class BundleError(ValueError):
    """A bundle that cannot be trusted: unknown version, missing or altered files."""


@dataclass(frozen=True)
class StimulusRecord:
    """One manifest row.

    For adversarial stimuli `target` is the attack's target class (the class of the closest
    decision boundary) and the `*_adversarial` fields describe the stored, 8-bit image. Catch
    trials are clean test images with a known label: `target` is None, the perturbation is 0
    and `success` is False.
    """

    stimulus_id: str
    kind: StimulusKind
    image: str
    image_sha256: str
    source_index: int
    original_label: int
    prediction_original: int
    confidence_original: float
    target: int | None
    prediction_adversarial: int
    # Softmax probability of `target` on the stored image (of the prediction, for catch trials).
    confidence_adversarial: float
    perturbation_l2: float
    rho: float
    # The stored image is classified as `target`.
    success: bool
    # ...and with probability >= confidence_original (the paper's stopping rule).
    reached_confidence: bool
    iterations: int
    defense: str
    network: str
    seed: int
    checkpoint_sha256: str


@dataclass(frozen=True)
class BundleMeta:
    """bundle.json, minus the fields the writer fills in itself."""

    defense: str
    network: str
    dataset: str
    seed: int
    checkpoint_sha256: str
    num_classes: int = 10
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    attack: dict[str, Any] = field(default_factory=dict)
    created_by: str = "advcritic stimuli"


@dataclass(frozen=True)
class Bundle:
    path: Path
    version: int
    meta: BundleMeta
    manifest_sha256: str
    records: list[StimulusRecord]

    def image_bytes(self, record: StimulusRecord) -> bytes:
        return (self.path / record.image).read_bytes()

    @property
    def adversarial(self) -> list[StimulusRecord]:
        return [r for r in self.records if r.kind == "adversarial"]

    @property
    def catch(self) -> list[StimulusRecord]:
        return [r for r in self.records if r.kind == "catch"]


def encode_png(pixels: Iterable[Iterable[int]] | Any) -> bytes:
    """PNG bytes of a 28x28 uint8 array (anything `PIL.Image.fromarray` takes)."""
    image = Image.fromarray(pixels, mode="L") if not isinstance(pixels, Image.Image) else pixels
    if image.size != IMAGE_SIZE or image.mode != "L":
        raise BundleError(f"stimulus images must be 28x28 grayscale, got {image.size} {image.mode}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_path(stimulus_id: str) -> str:
    return f"{IMAGE_DIR}/{stimulus_id}.png"


def write_bundle(
    out: str | os.PathLike[str],
    meta: BundleMeta,
    stimuli: Iterable[tuple[StimulusRecord, bytes]],
    *,
    overwrite: bool = False,
) -> Path:
    """Write records and their PNG bytes as a bundle at `out`, atomically.

    Each record's `image` and `image_sha256` must match the bytes given with it. With
    `overwrite`, an existing bundle is replaced only after the new one is complete.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; pass overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        (staging / IMAGE_DIR).mkdir()
        lines: list[str] = []
        counts = {"adversarial": 0, "catch": 0}
        seen: set[str] = set()
        for record, png in stimuli:
            if record.stimulus_id in seen:
                raise BundleError(f"duplicate stimulus id {record.stimulus_id!r}")
            seen.add(record.stimulus_id)
            if record.image != image_path(record.stimulus_id):
                raise BundleError(
                    f"{record.stimulus_id}: image path must be {image_path(record.stimulus_id)}"
                )
            if record.image_sha256 != sha256_bytes(png):
                raise BundleError(
                    f"{record.stimulus_id}: image_sha256 does not match its PNG bytes"
                )
            (staging / record.image).write_bytes(png)
            lines.append(json.dumps(asdict(record), sort_keys=True))
            counts[record.kind] += 1
        manifest = ("\n".join(lines) + "\n").encode() if lines else b""
        (staging / MANIFEST_FILE).write_bytes(manifest)
        header = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            **asdict(meta),
            "counts": counts,
            "manifest_sha256": sha256_bytes(manifest),
        }
        (staging / META_FILE).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        os.sync()  # one flush for all files, so the rename publishes complete data
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_bundle(path: str | os.PathLike[str], *, verify_images: bool = True) -> Bundle:
    """Open and verify a bundle; BundleError says precisely what is wrong."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    header = _read_header(root)
    version = header.get("version")
    if version not in SUPPORTED_BUNDLE_VERSIONS:
        known = ", ".join(str(v) for v in sorted(SUPPORTED_BUNDLE_VERSIONS))
        raise BundleError(
            f"{root}: unsupported bundle version {version!r} (this server reads {known})"
        )
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{root}: {MANIFEST_FILE} is missing")
    manifest = manifest_path.read_bytes()
    manifest_sha256 = sha256_bytes(manifest)
    if manifest_sha256 != header.get("manifest_sha256"):
        raise BundleError(
            f"{root}: {MANIFEST_FILE} does not match the hash in {META_FILE} (altered or truncated)"
        )
    meta_fields = {f.name for f in fields(BundleMeta)}
    try:
        meta = BundleMeta(**{k: v for k, v in header.items() if k in meta_fields})
    except TypeError as error:
        raise BundleError(f"{root}: {META_FILE} lacks fields: {error}") from error
    records = [_parse_record(root, number, line) for number, line in _manifest_lines(manifest)]
    _check_consistency(root, header, meta, records)
    if verify_images:
        for record in records:
            _verify_image(root, record)
    return Bundle(
        path=root, version=version, meta=meta, manifest_sha256=manifest_sha256, records=records
    )


def _read_header(root: Path) -> dict[str, Any]:
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{root}: {META_FILE} is missing; not a stimulus bundle")
    try:
        header = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{root}: {META_FILE} is not valid JSON: {error}") from error
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{root}: {META_FILE} does not describe an {BUNDLE_FORMAT}")
    return header


def _manifest_lines(manifest: bytes) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(manifest.decode("utf-8").splitlines(), start=1):
        if line.strip():
            yield number, line


def _parse_record(root: Path, number: int, line: str) -> StimulusRecord:
    try:
        row = json.loads(line)
        expected = {f.name for f in fields(StimulusRecord)}
        if set(row) != expected:
            missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
            raise BundleError(
                f"{root}: manifest line {number}: missing {missing}, unexpected {extra}"
            )
        record = StimulusRecord(**row)
    except json.JSONDecodeError as error:
        raise BundleError(f"{root}: manifest line {number} is not JSON: {error}") from error
    if record.kind not in ("adversarial", "catch"):
        raise BundleError(f"{root}: manifest line {number}: unknown kind {record.kind!r}")
    if record.image != image_path(record.stimulus_id):
        raise BundleError(
            f"{root}: manifest line {number}: image path {record.image!r} is not allowed"
        )
    return record


def _check_consistency(
    root: Path, header: dict[str, Any], meta: BundleMeta, records: list[StimulusRecord]
) -> None:
    ids = [r.stimulus_id for r in records]
    if len(set(ids)) != len(ids):
        raise BundleError(f"{root}: duplicate stimulus ids in the manifest")
    counts = {"adversarial": 0, "catch": 0}
    for record in records:
        counts[record.kind] += 1
        labels = [record.original_label, record.prediction_original, record.prediction_adversarial]
        if record.target is not None:
            labels.append(record.target)
        if any(not 0 <= label < meta.num_classes for label in labels):
            raise BundleError(
                f"{root}: {record.stimulus_id} has a class outside 0..{meta.num_classes - 1}"
            )
        if (record.defense, record.network, record.seed, record.checkpoint_sha256) != (
            meta.defense,
            meta.network,
            meta.seed,
            meta.checkpoint_sha256,
        ):
            raise BundleError(f"{root}: {record.stimulus_id} names another model than {META_FILE}")
        if (record.kind == "adversarial") != (record.target is not None):
            raise BundleError(
                f"{root}: {record.stimulus_id}: adversarial stimuli need a target, catch trials none"
            )
    if counts != header.get("counts"):
        raise BundleError(
            f"{root}: manifest holds {counts}, {META_FILE} says {header.get('counts')}"
        )


def _verify_image(root: Path, record: StimulusRecord) -> None:
    file = root / record.image
    if not file.is_file():
        raise BundleError(f"{root}: image {record.image} is missing")
    data = file.read_bytes()
    if sha256_bytes(data) != record.image_sha256:
        raise BundleError(f"{root}: image {record.image} does not match its manifest hash")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.size != IMAGE_SIZE or image.mode != "L":
                raise BundleError(
                    f"{root}: image {record.image} is {image.size} {image.mode}, not 28x28 L"
                )
    except BundleError:
        raise
    except Exception as error:
        raise BundleError(f"{root}: image {record.image} is not a readable PNG: {error}") from error
