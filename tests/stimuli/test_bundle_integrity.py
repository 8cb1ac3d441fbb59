"""A corrupted, truncated or foreign bundle is refused with a message naming the problem,
and writing one is atomic: a crash leaves no half bundle and never damages the old one."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contract.bundle import META_FILE, BundleError, read_bundle
from model.stimuli import generate


def manifest_lines(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in (bundle / "manifest.jsonl").read_text().splitlines()]


def write_manifest(bundle: Path, rows: list[dict], *, rehash: bool) -> None:
    """Rewrite the manifest; with `rehash`, also forge bundle.json's hash so deeper checks run."""
    data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    (bundle / "manifest.jsonl").write_bytes(data)
    if rehash:
        edit_header(bundle, manifest_sha256=hashlib.sha256(data).hexdigest())


def edit_header(bundle: Path, **changes: object) -> None:
    header = json.loads((bundle / META_FILE).read_text())
    header.update(changes)
    (bundle / META_FILE).write_text(json.dumps(header))


def edited_prediction(bundle: Path) -> None:
    rows = manifest_lines(bundle)
    rows[0]["prediction_adversarial"] = (rows[0]["prediction_adversarial"] + 1) % 10
    write_manifest(bundle, rows, rehash=False)


def truncated_manifest(bundle: Path) -> None:
    data = (bundle / "manifest.jsonl").read_bytes()
    (bundle / "manifest.jsonl").write_bytes(data[: len(data) // 2])


def dropped_row_rehashed(bundle: Path) -> None:
    write_manifest(bundle, manifest_lines(bundle)[:-1], rehash=True)


def other_model_rehashed(bundle: Path) -> None:
    rows = manifest_lines(bundle)
    rows[3]["defense"] = "ours"
    write_manifest(bundle, rows, rehash=True)


def unknown_field_rehashed(bundle: Path) -> None:
    rows = manifest_lines(bundle)
    rows[0]["answer"] = rows[0].pop("target")
    write_manifest(bundle, rows, rehash=True)


def removed_image(bundle: Path) -> None:
    (bundle / "images" / "adv-00005.png").unlink()


def altered_image(bundle: Path) -> None:
    (bundle / "images" / "adv-00001.png").write_bytes(
        (bundle / "images" / "adv-00002.png").read_bytes()
    )


def truncated_image(bundle: Path) -> None:
    path = bundle / "images" / "catch-00000.png"
    path.write_bytes(path.read_bytes()[:40])


def unknown_version(bundle: Path) -> None:
    edit_header(bundle, version=99)


def missing_header(bundle: Path) -> None:
    (bundle / META_FILE).unlink()


def garbled_header(bundle: Path) -> None:
    (bundle / META_FILE).write_text("{not json")


CORRUPTIONS: list[tuple[Callable[[Path], None], str]] = [
    (edited_prediction, "does not match the hash"),
    (truncated_manifest, "does not match the hash"),
    (dropped_row_rehashed, "manifest holds"),
    (other_model_rehashed, "names another model"),
    (unknown_field_rehashed, "unexpected ['answer']"),
    (removed_image, "adv-00005.png is missing"),
    (altered_image, "adv-00001.png does not match its manifest hash"),
    (truncated_image, "catch-00000.png does not match its manifest hash"),
    (unknown_version, "unsupported bundle version 99"),
    (missing_header, "bundle.json is missing"),
    (garbled_header, "not valid JSON"),
]


@pytest.mark.parametrize(
    ("corrupt", "message"), CORRUPTIONS, ids=[c.__name__ for c, _ in CORRUPTIONS]
)
def test_a_damaged_bundle_is_refused_with_a_clear_error(
    bundle_copy: Path, corrupt: Callable[[Path], None], message: str
) -> None:
    read_bundle(bundle_copy)  # intact before
    corrupt(bundle_copy)
    with pytest.raises(BundleError) as error:
        read_bundle(bundle_copy)
    assert message in str(error.value)


class Crash(RuntimeError):
    pass


def crash_after(count: int) -> Callable:
    """A stand-in for `outcome_records` that dies after `count` stimuli: a mid-run crash."""
    real = generate.outcome_records

    def records(*args, **kwargs):
        for number, item in enumerate(real(*args, **kwargs)):
            if number == count:
                raise Crash("killed mid-bundle")
            yield item

    return records


def test_a_crash_leaves_no_half_bundle(
    stimulus_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    from model.cli import main

    monkeypatch.setattr(generate, "outcome_records", crash_after(5))
    out = tmp_path / "bundle"
    with pytest.raises(Crash):
        main(
            [
                "stimuli",
                "--checkpoint",
                str(stimulus_checkpoint),
                "--out",
                str(out),
                "--limit",
                "8",
                "--max-iterations",
                "20",
                "--no-progress",
            ]
        )
    assert list(tmp_path.iterdir()) == [], "neither the bundle nor its staging folder may remain"


def test_a_crash_while_overwriting_keeps_the_old_bundle(
    stimulus_checkpoint: Path, bundle_copy: Path, monkeypatch
) -> None:
    from model.cli import main

    before = read_bundle(bundle_copy).manifest_sha256
    monkeypatch.setattr(generate, "outcome_records", crash_after(3))
    with pytest.raises(Crash):
        main(
            [
                "stimuli",
                "--checkpoint",
                str(stimulus_checkpoint),
                "--out",
                str(bundle_copy),
                "--overwrite",
                "--limit",
                "8",
                "--max-iterations",
                "20",
                "--no-progress",
            ]
        )
    assert read_bundle(bundle_copy).manifest_sha256 == before
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == [bundle_copy.name]


def test_the_bundle_reader_needs_no_torch(stimulus_bundle: Path) -> None:
    """The study server reads bundles in an install without PyTorch."""
    code = (
        "import sys; from contract.bundle import read_bundle; "
        f"b = read_bundle({str(stimulus_bundle)!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(len(b.records))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
