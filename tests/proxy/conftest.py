"""Proxy-annotator fixtures: real mnist-5k digits written as bundles whose answer is known.

`digit_bundle` writes any digits as adversarial stimuli with the real bundle writer, so the
tests label exactly what `advcritic proxy-labels` reads. The annotators are small: the k-NN
over the real training split (it has nothing to train) and a two-member ensemble (one FC,
one LeNet-5) trained for two epochs on 2,000 digits, cached in a session folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from contract.bundle import BundleMeta, StimulusRecord, encode_png, image_path, sha256_bytes
from model.proxy.annotators import ProxyAnnotators, build_annotators
from model.stimuli.quantize import quantize, to_numpy_pixels
from tests.fixtures.model import single_thread

TINY_MEMBERS = [("fc", 101), ("lenet5", 101)]
TINY_EPOCHS = 2
TINY_TRAIN = 2000


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield


def write_digit_bundle(
    out: Path,
    images: torch.Tensor,
    original_labels: torch.Tensor,
    targets: torch.Tensor,
    *,
    defense: str = "reference",
    seed: int = 0,
) -> Path:
    """`images` as the adversarial stimuli of a bundle, with the given labels and targets."""
    from contract.bundle import write_bundle

    meta = BundleMeta(
        defense=defense, network="fc", dataset="mnist-5k", seed=seed, checkpoint_sha256="0" * 64
    )
    pixels = to_numpy_pixels(quantize(images))

    def stimuli() -> Iterator[tuple[StimulusRecord, bytes]]:
        for index, (label, target) in enumerate(
            zip(original_labels.tolist(), targets.tolist(), strict=True)
        ):
            stimulus_id = f"adv-{index:05d}"
            png = encode_png(pixels[index])
            record = StimulusRecord(
                stimulus_id=stimulus_id,
                kind="adversarial",
                image=image_path(stimulus_id),
                image_sha256=sha256_bytes(png),
                source_index=index,
                original_label=label,
                prediction_original=label,
                confidence_original=0.99,
                target=target,
                prediction_adversarial=target,
                confidence_adversarial=0.99,
                perturbation_l2=1.0,
                rho=0.1,
                success=True,
                reached_confidence=True,
                iterations=1,
                defense=defense,
                network="fc",
                seed=seed,
                checkpoint_sha256="0" * 64,
            )
            yield record, png

    return write_bundle(out, meta, stimuli())


# The same annotators through the command line (members found in `annotators_dir`).
TINY_CLI_ARGS = [
    "--members",
    ",".join(f"{network}-s{seed}" for network, seed in TINY_MEMBERS),
    "--epochs",
    str(TINY_EPOCHS),
    "--train-limit",
    str(TINY_TRAIN),
    "--threads",
    "1",
]


@pytest.fixture(scope="session")
def annotators_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny ensemble's members are cached for the whole session."""
    return tmp_path_factory.mktemp("annotators")


@pytest.fixture(scope="session")
def tiny_annotators(annotators_dir: Path) -> ProxyAnnotators:
    with single_thread():
        return build_annotators(
            "mnist-5k",
            members=TINY_MEMBERS,
            k=5,
            epochs=TINY_EPOCHS,
            folder=annotators_dir,
            train_limit=TINY_TRAIN,
        )


@pytest.fixture(scope="session")
def clean_digits(mnist5k_test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 200 test digits (20 per class on average) and their labels."""
    images, labels = mnist5k_test_set.tensors
    return images[:200], labels[:200]


@pytest.fixture(scope="session")
def held_out_digits(mnist5k_test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """Test digits 500.., disjoint from `clean_digits`: the stand-ins for target classes."""
    images, labels = mnist5k_test_set.tensors
    return images[500:], labels[500:]
