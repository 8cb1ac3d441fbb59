"""Each defense, trained for real for a few steps: its loss falls and its parts do their job."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contract.names import DEFENSES, canonical_defense
from model.attacks.gradients import difference_gradients
from model.defenses import (
    AdversaryCriticDefense,
    RunningClassConfidence,
    build_defense,
    resolve_params,
)
from model.defenses.margin_maximization import most_sensitive_class, multiclass_hinge
from model.defenses.virtual_adversarial import VirtualAdversarialTraining, kl_from_logits
from model.networks import build_classifier
from tests.training.conftest import tiny_config


def make_defense(name: str, seed: int = 0, network: str = "fc", **params: object):
    torch.manual_seed(seed)
    config = tiny_config(name, network=network, params=params)
    return build_defense(name, build_classifier(network), config.params(), config.optimizer)


@pytest.mark.parametrize("name", DEFENSES)
def test_training_steps_lower_the_defense_loss(name, fixed_batch):
    # The adversary critic's step is ~30x the reference's: half the batch keeps CI quick.
    x, y = fixed_batch if name != "ours" else (fixed_batch[0][:32], fixed_batch[1][:32])
    defense = make_defense(name)
    losses = [float(defense.train_step(x, y, pretraining=False)["loss"]) for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-2:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", DEFENSES)
def test_every_defense_trains_lenet5_too(name, fixed_batch):
    """Convolutions under second-order gradients (mm, ours) and the paper's LeNet lambda."""
    x, y = fixed_batch[0][:32], fixed_batch[1][:32]
    defense = make_defense(name, network="lenet5")
    losses = [float(defense.train_step(x, y, pretraining=False)["loss"]) for _ in range(6)]
    assert min(losses[-2:]) < losses[0], losses
    if name == "ours":
        assert defense.params.lam == 0.1


def test_adversary_critic_logs_every_term_and_trains_its_critic(fixed_batch):
    x, y = fixed_batch[0][:32], fixed_batch[1][:32]
    defense = make_defense("ours")
    critic_before = {k: v.clone() for k, v in defense.critic_state().items()}
    confidence_before = defense.confidence.values.clone()
    metrics = defense.train_step(x, y, pretraining=False)
    for term in (
        "nll",
        "fool",
        "cycle",
        "critic_loss",
        "critic_penalty",
        "attack_success",
        "attack_l2",
    ):
        assert term in metrics and torch.isfinite(metrics[term]), term
    # The attack changes most predictions of an untrained net, so the critic terms are live.
    assert metrics["attack_success"] > 0.5
    assert metrics["fool"] > 0 and metrics["cycle"] > 0
    assert any(not torch.equal(critic_before[k], v) for k, v in defense.critic_state().items())
    assert not torch.equal(confidence_before, defense.confidence.values)


def test_critic_fooling_term_reaches_the_classifier_through_the_attack(fixed_batch):
    """The same step with and without lambda moves the classifier differently: the
    critic's verdict on A_f(x) is differentiated through the attack into the weights."""
    x, y = fixed_batch
    weights = []
    for lam in (0.0, 0.5):
        defense = make_defense("ours", lam=lam, cycle=0.0)
        defense.train_step(x, y, pretraining=False)
        weights.append(torch.cat([p.detach().flatten() for p in defense.net.parameters()]))
    assert (weights[0] - weights[1]).abs().max() > 1e-6


def test_adversary_critic_pretraining_is_plain_nll_and_leaves_the_critic_alone(fixed_batch):
    x, y = fixed_batch
    defense = make_defense("ours")
    critic_before = {k: v.clone() for k, v in defense.critic_state().items()}
    metrics = defense.train_step(x, y, pretraining=True)
    assert set(metrics) == {"loss", "nll", "error"}
    assert all(torch.equal(critic_before[k], v) for k, v in defense.critic_state().items())
    assert isinstance(defense, AdversaryCriticDefense) and defense.pretrain_epochs == 1


def test_running_class_confidence_follows_the_authors_update():
    confidence = RunningClassConfidence(3, decay=0.5)
    # Two samples predicted as class 0 (confidences 0.8 and 0.6), none of classes 1 and 2...
    logits = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]]))
    confidence.update(logits)
    # ...class 0 moves halfway to the batch mean 0.7; unseen classes keep their value 1.
    assert torch.allclose(confidence.values, torch.tensor([0.85, 1.0, 1.0]))
    assert torch.allclose(confidence[torch.tensor([2, 0])], torch.tensor([1.0, 0.85]))


def test_multiclass_hinge_matches_its_definition():
    logits = torch.tensor([[2.0, 1.5, -1.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    # max(0, 1 + 1.5 - 2) = 0.5 and max(0, 1 + 3 - 1) = 3
    assert multiclass_hinge(logits, labels, 1.0).item() == pytest.approx((0.5 + 3.0) / 2)


def test_margin_penalty_picks_the_class_with_the_most_different_gradient(fixed_batch):
    x, y = fixed_batch[0][:8], fixed_batch[1][:8]
    net = build_classifier("fc")
    logits = net(x)
    chosen = most_sensitive_class(net, x, y, logits)
    every_class = torch.arange(10).repeat(len(x), 1)
    _, _, grads = difference_gradients(net, x, y, every_class)
    expected = grads.flatten(2).square().sum(2).argmax(1)
    assert torch.equal(chosen, expected)
    assert bool((chosen != y).all())


def test_virtual_adversarial_direction_beats_a_random_one(fixed_batch):
    x = fixed_batch[0][:32]
    defense = make_defense("vat")
    assert isinstance(defense, VirtualAdversarialTraining)
    with torch.no_grad():
        clean = defense.net(x)
    direction = defense.virtual_adversarial_direction(x, clean)
    random = torch.randn_like(x)
    random = random / random.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(direction.flatten(1).norm(dim=1), torch.ones(len(x)), atol=1e-4)
    with torch.no_grad():
        adversarial = kl_from_logits(clean, defense.net(x + 2.0 * direction)).mean()
        baseline = kl_from_logits(clean, defense.net(x + 2.0 * random)).mean()
    assert adversarial > 2 * baseline


def test_adversarial_training_uses_fgsm_examples(fixed_batch):
    x, y = fixed_batch
    defense = make_defense("at")
    metrics = defense.train_step(x, y, pretraining=False)
    clean = F.cross_entropy(defense.net(x), y)
    assert metrics["adversarial_nll"] > metrics["nll"]
    assert torch.isfinite(clean)


@pytest.mark.parametrize(
    ("name", "expected"), [("REF", "reference"), ("fgsm", "at"), ("critic", "ours"), ("mm", "mm")]
)
def test_defense_names_and_aliases(name, expected):
    assert canonical_defense(name) == expected


def test_unknown_defense_and_bad_parameters_are_named():
    with pytest.raises(ValueError, match="unknown defense 'pgd'.*reference, at, vat, mm, ours"):
        canonical_defense("pgd")
    with pytest.raises(ValueError, match="unknown parameter 'epsilon'.*eps"):
        resolve_params("at", "fc", {"epsilon": "0.1"})
    with pytest.raises(ValueError, match="invalid VAT parameters"):
        resolve_params("vat", "fc", {"eps": "-1"})


def test_paper_lambda_depends_on_the_network():
    assert resolve_params("ours", "fc").lam == 0.5
    assert resolve_params("ours", "lenet5").lam == 0.1
    assert resolve_params("ours", "lenet5", {"lam": "0.3"}).lam == 0.3


def test_critic_accuracy_is_monitored_on_held_out_digits(mnist5k, tiny_data, tmp_path):
    """After each adversarial epoch the log holds the critic's accuracy on training digits and
    on test digits it never trains on, measured the same way; measuring changes nothing."""
    from model.training import Trainer

    config = tiny_config("ours", epochs=2)
    rows = Trainer(config, tmp_path, data=tiny_data, progress=False).run().history
    assert "critic_heldout_acc" not in rows[0]  # pretraining: the critic is not trained yet
    for row in rows[1:]:
        for split in ("train", "heldout"):
            parts = [row[f"critic_{split}_acc_{kind}"] for kind in ("real", "adv")]
            assert all(0 <= part <= 1 for part in parts)
            assert row[f"critic_{split}_acc"] == pytest.approx(sum(parts) / 2)

    defense = make_defense("ours")
    x, y = fixed_batch_from(mnist5k)
    defense.train_step(x, y, pretraining=False)
    held_out = (mnist5k.test_images[:40], mnist5k.test_labels[:40])
    weights = {k: v.clone() for k, v in defense.net.state_dict().items()}
    critic = {k: v.clone() for k, v in defense.critic_state().items()}
    rng = torch.get_rng_state()
    first = defense.monitor((x, y), held_out)
    assert defense.monitor((x, y), held_out) == first
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(weights[k], v) for k, v in defense.net.state_dict().items())
    assert all(torch.equal(critic[k], v) for k, v in defense.critic_state().items())


def fixed_batch_from(data):
    small = data.limited(32)
    return small.train_images, small.train_labels


def test_adversarial_training_clipping_is_a_recorded_option(fixed_batch):
    """Clipped by default (images people and attacks see are in [0, 1]); `clip=false` is the
    authors' unclipped FGSM image, a larger step (L2 eps * 28 = 2.8 on every image)."""
    x, y = fixed_batch
    assert tiny_config("at").defense_params["clip"] is True
    assert tiny_config("at", params={"clip": "false"}).defense_params["clip"] is False
    seen = {}
    for clip in (True, False):
        defense = make_defense("at", clip=clip)
        original = defense.net.forward

        def spy(inputs, clip=clip, original=original):
            seen.setdefault(clip, []).append(inputs.detach())
            return original(inputs)

        defense.net.forward = spy
        defense.objective(x, y)
    clipped, unclipped = seen[True][-1], seen[False][-1]
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1
    assert float(unclipped.min()) < 0
    steps = (unclipped - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(steps, torch.full_like(steps, 0.1 * 28), rtol=1e-4, atol=1e-4)
    assert float((clipped - x).flatten(1).norm(dim=1).mean()) < 0.85 * 2.8
