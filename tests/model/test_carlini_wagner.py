"""C&W-L2 reproduces Foolbox's results, does not depend on how the caller batches, and
reports misclassified inputs and failures as documented."""

from __future__ import annotations

import pytest
import torch

from model.attacks import L2CarliniWagnerAttack

SHORT = {"steps": 40, "binary_search_steps": 4}


def test_same_results_as_foolbox(small_fc, correct_batch) -> None:
    foolbox = pytest.importorskip("foolbox")
    images, labels = correct_batch
    ours = L2CarliniWagnerAttack(**SHORT, abort_group=None)(small_fc, images, labels)
    theirs = foolbox.attacks.L2CarliniWagnerAttack(**SHORT)(
        foolbox.PyTorchModel(small_fc, bounds=(0, 1)), images, labels, epsilons=None
    )[1]
    small_fc.zero_grad(set_to_none=True)  # Foolbox's loss.backward() leaves weight gradients
    found = theirs.flatten(1).abs().amax(dim=1) > 0  # Foolbox returns zeros where it found none
    assert torch.equal(ours.success, found)
    ours_norms = (ours.clipped - images).flatten(1).norm(dim=1)[found]
    their_norms = (theirs - images).flatten(1).norm(dim=1)[found]
    torch.testing.assert_close(ours_norms, their_norms, rtol=1e-4, atol=1e-5)


def test_results_do_not_depend_on_the_callers_batches(small_fc, correct_batch) -> None:
    images, labels = correct_batch
    attack = L2CarliniWagnerAttack(**SHORT, abort_group=10)
    whole = attack(small_fc, images, labels)
    parts = [attack(small_fc, images[i : i + 20], labels[i : i + 20]) for i in range(0, 40, 20)]
    assert torch.equal(whole.clipped, torch.cat([part.clipped for part in parts]))
    assert torch.equal(whole.iterations, torch.cat([part.iterations for part in parts]))


def test_misclassified_inputs_and_failures(small_fc, correct_batch) -> None:
    images, labels = correct_batch[0][:6], correct_batch[1][:6]
    wrong = (labels + 1) % 10  # the model's prediction differs from these labels
    result = L2CarliniWagnerAttack(**SHORT)(small_fc, images, wrong)
    assert torch.equal(result.clipped, images) and bool(result.success.all())
    assert result.iterations.tolist() == [0] * 6
    hopeless = L2CarliniWagnerAttack(steps=1, binary_search_steps=1)(small_fc, images, labels)
    assert torch.equal(hopeless.clipped, images) and not bool(hopeless.success.any())
    assert hopeless.iterations.tolist() == [1] * 6


def test_bad_abort_group() -> None:
    with pytest.raises(ValueError, match="abort_group must be >= 1 or None, got 0"):
        L2CarliniWagnerAttack(abort_group=0)
