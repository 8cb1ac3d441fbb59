"""Bad input to `advcritic stimuli` / `advcritic figures`: exit status 2, a message naming
the bad value, and nothing written or overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.bundle import read_bundle
from model.cli import main


@pytest.fixture
def garbage_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().err


STIMULI_CASES = [
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--catch", "-3"], "--catch must be >= 0, got -3"),
    (["--catch", "99999"], "--catch 99999 exceeds the 4000 images of the train split"),
    (["--max-iterations", "0"], "--max-iterations must be >= 1, got 0"),
    (["--step-clip", "-0.5"], "--step-clip must be a positive number, got -0.5"),
    (["--dataset", "cifar-10"], "unknown dataset 'cifar-10'"),
    (["--device", "potato"], "unknown device 'potato'"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--split", "valid"], "--split 'valid': use train or test"),
    (["--dataset", "fashion-mnist", "--data-root", "/nonexistent/folder"], "/nonexistent/folder"),
]


FIGURE_CASES = [
    (["--which", "3"], "--which '3'"),
    (["--which", ""], "--which ''"),
    (["--confidence", "1.5"], "--confidence must be in (0, 1), got 1.5"),
    (["--count", "0"], "--count must be in 1..1000"),
    (["--count", "5000"], "got 5000"),
    (["--columns", "0"], "--columns must be >= 1, got 0"),
]


BAD_VALUE_CASES = [("stimuli", *case) for case in STIMULI_CASES] + [
    ("figures", *case) for case in FIGURE_CASES
]


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    BAD_VALUE_CASES,
    ids=[" ".join([command, *extra]) for command, extra, _ in BAD_VALUE_CASES],
)
def test_bad_values_exit_2_and_write_nothing(
    capsys: pytest.CaptureFixture[str],
    stimulus_checkpoint: Path,
    tmp_path: Path,
    command: str,
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    status, err = run(
        capsys, command, "--checkpoint", str(stimulus_checkpoint), "--out", str(out), *extra
    )
    assert status == 2
    assert message in err
    assert not out.exists()


def test_stimuli_rejects_missing_and_damaged_checkpoints(
    capsys: pytest.CaptureFixture[str], garbage_checkpoint: Path, tmp_path: Path
) -> None:
    status, err = run(
        capsys, "stimuli", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")
    )
    assert status == 2 and "checkpoint not found" in err and "nope.pt" in err
    status, err = run(
        capsys, "stimuli", "--checkpoint", str(garbage_checkpoint), "--out", str(tmp_path / "b")
    )
    assert status == 2 and "garbage.pt" in err
    assert not (tmp_path / "b").exists()


def test_stimuli_never_overwrites_without_being_asked(
    capsys: pytest.CaptureFixture[str], stimulus_checkpoint: Path, bundle_copy: Path
) -> None:
    before = read_bundle(bundle_copy).manifest_sha256
    status, err = run(
        capsys, "stimuli", "--checkpoint", str(stimulus_checkpoint), "--out", str(bundle_copy)
    )
    assert status == 2 and "already exists; pass --overwrite" in err
    assert read_bundle(bundle_copy).manifest_sha256 == before


def test_cuda_device_without_cuda_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], stimulus_checkpoint: Path, tmp_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status, err = run(
        capsys,
        "stimuli",
        "--checkpoint",
        str(stimulus_checkpoint),
        "--out",
        str(tmp_path / "b"),
        "--device",
        "cuda:0",
    )
    assert status == 2 and "'cuda:0'" in err and "no CUDA GPU" in err
