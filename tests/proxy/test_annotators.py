"""Proxy annotators on stimuli whose answer is known.

(a) Clean test digits with a made-up target: nothing changed them, so "no change" must be
    the annotator's accuracy on those digits.
(b) Each stimulus replaced by a held-out digit of its target class: the digit now *is* the
    target, so "change" must be the annotator's accuracy on the swapped-in digits.
Both go through the real bundle writer and reader, so the PNG round trip is part of it.
"""

from __future__ import annotations

import pytest
import torch

from contract.bundle import read_bundle
from contract.labels import EXPORT_COLUMNS
from model.proxy.ensemble import MemberRecipe, obtain_members
from model.proxy.knn import KNNAnnotator
from model.proxy.labeling import bundle_images, proxy_rows
from tests.proxy.conftest import write_digit_bundle


def shares(rows: list[dict], annotator: str) -> tuple[float, float]:
    """(change, no change) fractions of one annotator's rows."""
    mine = [row for row in rows if row["worker_id"] == annotator]
    change = sum(row["label"] == row["target"] for row in mine) / len(mine)
    no_change = sum(row["label"] == row["original_label"] for row in mine) / len(mine)
    return change, no_change


def test_clean_digits_with_a_made_up_target_are_no_change(tiny_annotators, clean_digits, tmp_path):
    images, labels = clean_digits
    targets = (labels + 1) % 10
    bundle = read_bundle(write_digit_bundle(tmp_path / "clean", images, labels, targets))
    torch.testing.assert_close(bundle_images(bundle), images, rtol=0, atol=0)  # 8-bit digits
    rows = proxy_rows(bundle, tiny_annotators.annotators)
    assert len(rows) == len(tiny_annotators.annotators) * len(images)
    assert all(set(row) == set(EXPORT_COLUMNS) for row in rows)
    for annotator in tiny_annotators.annotators:
        accuracy = float((annotator.predict(images) == labels).double().mean())
        change, no_change = shares(rows, annotator.name)
        assert accuracy > 0.8, f"{annotator.name} is too weak for the test to mean anything"
        assert no_change == pytest.approx(accuracy, abs=1e-9)
        assert change < 0.1  # only mistakes that happen to hit the made-up target


def test_digits_of_the_target_class_are_change(
    tiny_annotators, clean_digits, held_out_digits, tmp_path
):
    _, labels = clean_digits
    stand_ins, stand_in_labels = held_out_digits
    targets = (labels + 3) % 10
    # For each stimulus, the next unused held-out digit of its target class.
    pools = {c: (stand_in_labels == c).nonzero().flatten().tolist() for c in range(10)}
    chosen = torch.tensor([pools[int(t)].pop() for t in targets])
    images = stand_ins[chosen]
    assert torch.equal(stand_in_labels[chosen], targets)
    rows = proxy_rows(
        read_bundle(write_digit_bundle(tmp_path / "swapped", images, labels, targets)),
        tiny_annotators.annotators,
    )
    for annotator in tiny_annotators.annotators:
        accuracy = float((annotator.predict(images) == targets).double().mean())
        change, no_change = shares(rows, annotator.name)
        assert accuracy > 0.8
        assert change == pytest.approx(accuracy, abs=1e-9)
        assert no_change < 0.1


def test_rows_name_the_study_and_annotator_and_never_pass_for_people(
    tiny_annotators, clean_digits, tmp_path
):
    images, labels = clean_digits
    targets = (labels[:5] + 1) % 10
    path = write_digit_bundle(
        tmp_path / "b", images[:5], labels[:5], targets, defense="ours", seed=2
    )
    rows = proxy_rows(read_bundle(path), tiny_annotators.annotators)
    names = ["knn-k5", "ensemble", "ensemble-fc", "ensemble-lenet5"]
    assert [row["worker_id"] for row in rows] == names * 5
    assert {(row["worker_source"], row["verification"]) for row in rows} == {("proxy", "proxy")}
    assert {row["study"] for row in rows} == {"ours-fc-s2-proxy"}
    assert [row["position"] for row in rows] == [p for p in range(5) for _ in names]


def test_sub_ensembles_hold_one_architecture_each(tiny_annotators, clean_digits):
    """`ensemble` averages all members; `ensemble-fc`/`ensemble-lenet5` each one architecture."""
    by_name = {a.name: a for a in tiny_annotators.annotators}
    images = clean_digits[0][:50]
    full, fc, lenet = (by_name[n] for n in ("ensemble", "ensemble-fc", "ensemble-lenet5"))
    assert len(fc.members) == len(lenet.members) == 1
    mean = (fc.probabilities(images) + lenet.probabilities(images)) / 2
    torch.testing.assert_close(full.probabilities(images), mean)


def test_clean_accuracy_is_measured_on_the_test_split(tiny_annotators, mnist5k_test_set):
    images, labels = mnist5k_test_set.tensors
    for annotator in tiny_annotators.annotators:
        expected = float((annotator.predict(images) == labels).double().mean())
        assert tiny_annotators.accuracy[annotator.name] == expected


def test_knn_votes_plurality_and_breaks_ties_by_the_nearest(mnist5k_train_set):
    images, labels = mnist5k_train_set.tensors
    knn = KNNAnnotator(images, labels, k=5)
    nearest_first = torch.tensor([[1, 2, 2, 1, 3], [3, 2, 2, 1, 1], [4, 4, 4, 0, 0]])
    assert knn.vote(nearest_first).tolist() == [1, 2, 4]
    # A training digit is its own nearest neighbour (distance 0).
    distances, index = knn.neighbours(images[:20])
    assert torch.equal(index[:, 0], torch.arange(20)) and float(distances[:, 0].max()) < 1e-9
    with pytest.raises(ValueError, match="k must be in 1..4000"):
        KNNAnnotator(images, labels, k=0)


def test_ensemble_members_are_cached_and_damaged_files_retrained(mnist5k_train_set, tmp_path):
    images, labels = mnist5k_train_set.tensors
    images, labels = images[:300], labels[:300]
    recipe = [MemberRecipe("fc", 7, epochs=1)]
    messages: list[str] = []
    first = obtain_members(recipe, images, labels, tmp_path, log=messages.append)[0]
    second = obtain_members(recipe, images, labels, tmp_path, log=messages.append)[0]
    assert messages[0].startswith("training") and messages[1].startswith("ensemble member")
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    (saved,) = tmp_path.glob("fc-s7-*.pt")
    saved.write_bytes(b"damaged")
    obtain_members(recipe, images, labels, tmp_path, log=messages.append)
    assert messages[2].startswith("training")
    # Other training digits are another member: the cached one does not answer for them.
    obtain_members(recipe, images[:200], labels[:200], tmp_path, log=messages.append)
    assert messages[3].startswith("training") and len(list(tmp_path.glob("fc-s7-*.pt"))) == 2
