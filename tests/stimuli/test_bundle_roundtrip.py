"""A bundle from a tiny trained model round-trips; its manifest tells the truth about its PNGs."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contract.bundle import BUNDLE_VERSION, Bundle, read_bundle
from model.attacks.high_confidence import MAX_CONFIDENCE
from model.checkpoint import file_sha256, load_checkpoint
from tests.stimuli.conftest import BUNDLE_ADVERSARIAL, BUNDLE_CATCH

# Re-running the model on a different batch composition moves float32 outputs by ~1e-7;
# confidences are compared with this tolerance, predictions exactly.
TOLERANCE = 1e-5


def decoded(bundle: Bundle) -> tuple[list, torch.Tensor]:
    """Records and the batch (N, 1, 28, 28) their PNGs decode to."""
    arrays = []
    for record in bundle.records:
        with Image.open(io.BytesIO(bundle.image_bytes(record))) as image:
            arrays.append(np.array(image, dtype=np.uint8))
    return bundle.records, torch.from_numpy(np.stack(arrays)).unsqueeze(1).float() / 255


def test_bundle_round_trips_with_the_checkpoints_identity(
    stimulus_bundle: Path, stimulus_checkpoint: Path
) -> None:
    bundle = read_bundle(stimulus_bundle)
    checkpoint = load_checkpoint(stimulus_checkpoint)
    assert bundle.version == BUNDLE_VERSION
    assert (bundle.meta.defense, bundle.meta.network, bundle.meta.seed, bundle.meta.dataset) == (
        "reference",
        "fc",
        3,
        "mnist-5k",
    )
    assert bundle.meta.checkpoint_sha256 == file_sha256(stimulus_checkpoint)
    assert checkpoint.seed == bundle.meta.seed
    assert bundle.meta.attack["max_iterations"] == 150
    assert bundle.meta.attack["source_split"] == "test"
    assert bundle.meta.attack["catch_trials"] == {
        "count": BUNDLE_CATCH,
        "seed": 0,
        "split": "train",
    }
    assert len(bundle.adversarial) == BUNDLE_ADVERSARIAL and len(bundle.catch) == BUNDLE_CATCH
    assert [r.stimulus_id for r in bundle.adversarial] == [
        f"adv-{i:05d}" for i in range(BUNDLE_ADVERSARIAL)
    ]
    assert [r.source_index for r in bundle.adversarial] == list(range(BUNDLE_ADVERSARIAL))
    assert all(
        (r.defense, r.network, r.seed, r.checkpoint_sha256)
        == ("reference", "fc", 3, bundle.meta.checkpoint_sha256)
        for r in bundle.records
    )


def test_manifest_agrees_with_the_model_rerun_on_the_pngs(
    stimulus_bundle: Path, stimulus_model: torch.nn.Module, mnist5k_test, mnist5k_train
) -> None:
    records, stored = decoded(read_bundle(stimulus_bundle))
    with torch.no_grad():
        probabilities = torch.softmax(stimulus_model(stored), dim=1)
    for row, record in enumerate(records):
        images, labels = mnist5k_test if record.kind == "adversarial" else mnist5k_train
        original = images[record.source_index]
        assert record.original_label == int(labels[record.source_index])
        with torch.no_grad():
            clean = torch.softmax(stimulus_model(original.unsqueeze(0)), dim=1)[0]
        assert record.prediction_original == int(clean.argmax())
        assert record.confidence_original == pytest.approx(float(clean.max()), abs=TOLERANCE)
        assert record.prediction_adversarial == int(probabilities[row].argmax()), record.stimulus_id
        read_class = (
            record.target if record.kind == "adversarial" else record.prediction_adversarial
        )
        assert record.confidence_adversarial == pytest.approx(
            float(probabilities[row, read_class]), abs=TOLERANCE
        )
        l2 = float((stored[row] - original).flatten().norm())
        assert record.perturbation_l2 == pytest.approx(l2, abs=1e-4)
        assert record.rho == pytest.approx(l2 / float(original.flatten().norm()), abs=1e-4)


def test_success_flags_follow_from_the_recorded_numbers(stimulus_bundle: Path) -> None:
    bundle = read_bundle(stimulus_bundle)
    for record in bundle.adversarial:
        assert record.target != record.prediction_original, (
            "the target is another class than the prediction"
        )
        assert record.success == (record.prediction_adversarial == record.target)
        # C is the original's confidence, capped at 1 - 2^-24 like the attack's goal.
        goal = min(record.confidence_original, MAX_CONFIDENCE)
        assert record.reached_confidence == (
            record.success and record.confidence_adversarial >= goal
        )
        assert record.perturbation_l2 > 0
    # The protocol works on a trained net: nearly every stimulus reaches its confidence.
    reached = sum(r.reached_confidence for r in bundle.adversarial)
    assert reached >= 0.9 * len(bundle.adversarial), (
        f"only {reached} of {len(bundle.adversarial)} reached C"
    )


def test_catch_trials_are_clean_labelled_and_balanced(stimulus_bundle: Path, mnist5k_train) -> None:
    bundle = read_bundle(stimulus_bundle)
    for record in bundle.catch:
        assert record.target is None and not record.success and not record.reached_confidence
        assert record.perturbation_l2 == 0 and record.rho == 0 and record.iterations == 0
        assert record.prediction_adversarial == record.prediction_original
    classes = Counter(r.original_label for r in bundle.catch)
    assert set(classes) == set(range(10)) and max(classes.values()) - min(classes.values()) <= 1
    assert len({r.source_index for r in bundle.catch}) == BUNDLE_CATCH


def test_failed_attacks_are_kept_and_marked(stimulus_checkpoint: Path, tmp_path: Path) -> None:
    from model.cli import main

    out = tmp_path / "starved"
    args = [
        "stimuli",
        "--checkpoint",
        str(stimulus_checkpoint),
        "--out",
        str(out),
        "--limit",
        "12",
        "--max-iterations",
        "2",
        "--no-progress",
    ]
    assert main(args) == 0
    bundle = read_bundle(out)
    assert len(bundle.adversarial) == 12, "failures must not be dropped"
    failed = [r for r in bundle.adversarial if not r.reached_confidence]
    assert len(failed) >= 10, "two steps of 0.1 cannot reach the confidence of a trained net"
    assert all(r.iterations <= 2 for r in failed), "a budget-exhausted attack gets no repair rounds"


def test_generation_is_reproducible(
    stimulus_model: torch.nn.Module, mnist5k_test, mnist5k_train, tmp_path: Path
) -> None:
    from contract.bundle import BundleMeta
    from model.stimuli.attack import AttackSettings
    from model.stimuli.generate import CatchPlan, ImageSource, generate_bundle

    source = ImageSource("mnist-5k", "test", *mnist5k_test)
    catch = CatchPlan(count=5, seed=7, source=ImageSource("mnist-5k", "train", *mnist5k_train))
    meta = BundleMeta("reference", "fc", "mnist-5k", 3, "0" * 64)
    hashes = []
    for name in ("first", "second"):
        report = generate_bundle(
            stimulus_model,
            meta,
            source,
            tmp_path / name,
            limit=10,
            catch=catch,
            settings=AttackSettings(max_iterations=100),
        )
        hashes.append(read_bundle(report.bundle).manifest_sha256)
    assert hashes[0] == hashes[1]
