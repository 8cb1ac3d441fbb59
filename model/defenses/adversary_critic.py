"""The paper's defense: train the classifier so that its own high-confidence adversarial
examples fool an adversary critic (Matyasko & Chau 2018, eqs. 4-6).

One step, following the authors' code (aam-at/adversary_critic, train_critic.py):
1. update the running class confidence C with the clean batch;
2. attack every input with the differentiable, 5-step high-confidence attack towards the
   class of its closest decision boundary (from the predicted label), at confidence C;
3. critic update: real images at their true label -> 1, adversarial images at the model's
   prediction on them -> 0, plus 10 * [(||grad z_real|| - 1)^2 + (||grad z_adv|| - 1)^2];
4. classifier update: NLL + lambda * (critic fooled on the *successful* adversarial
   examples, through the attack, i.e. second order) + 1e-2 * cycle consistency
   ||x - A(A(x, t), original prediction)||^2 on the same examples.
The first epoch is plain NLL with 5e-6 L2 weight decay, to get an initial estimate of C.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from model.attacks import closest_boundary_targets, high_confidence_attack_unrolled
from model.defenses.base import Batch, Defense, Metrics, OptimizerSettings
from model.defenses.class_confidence import RunningClassConfidence
from model.defenses.reference import classification_metrics
from model.networks import AdversaryCritic

# lambda selected on validation data in the paper, per network.
PAPER_LAMBDA = {"fc": 0.5, "lenet5": 0.1}


@dataclass(frozen=True)
class CriticParams:
    """Defaults are the paper's (section 5) and the authors' code."""

    # Weight of the critic-fooling term; None = the paper's value for the network.
    lam: float | None = None
    cycle: float = 1e-2
    grad_penalty: float = 10.0
    attack_steps: int = 5
    attack_overshoot: float = 0.05
    # The authors' training attack does not clip to [0, 1]; true clips (no gradient outside).
    attack_clip: bool = False
    critic_lr: float = 1e-3
    pretrain_epochs: int = 1
    pretrain_weight_decay: float = 5e-6
    confidence_decay: float = 0.5
    num_classes: int = 10

    def for_network(self, network: str) -> CriticParams:
        return self if self.lam is not None else replace(self, lam=PAPER_LAMBDA[network])

    def validate(self) -> None:
        if (self.lam is not None and self.lam < 0) or self.cycle < 0 or self.grad_penalty < 0:
            raise ValueError(f"loss weights must be >= 0: {self}")
        if self.attack_steps < 1 or self.pretrain_epochs < 0 or self.critic_lr <= 0:
            raise ValueError(f"invalid adversary-critic parameters: {self}")


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def _unit_gradient_penalty(gradients: torch.Tensor) -> torch.Tensor:
    return (gradients.flatten(1).norm(dim=1) - 1).square().mean()


def _decayed_weights(net: nn.Module) -> list[torch.Tensor]:
    """Weight matrices/kernels except the output layer's (what the authors decay)."""
    return [p for p in net.parameters() if p.dim() > 1][:-1]


class AdversaryCriticDefense(Defense):
    """References: Matyasko & Chau, "Improved Network Robustness with Adversary Critic",
    NeurIPS 2018."""

    name = "ours"
    Params = CriticParams
    default_optimizer = OptimizerSettings(
        lr=5e-4, betas=(0.5, 0.999), decay_every=40, decay_factor=0.5
    )

    def __init__(
        self,
        classifier: nn.Module,
        params: CriticParams,
        optimizer: OptimizerSettings,
        **options: Any,
    ) -> None:
        if params.lam is None:
            raise ValueError("CriticParams.lam is unresolved; call for_network() first")
        super().__init__(classifier, params, optimizer, **options)
        device = next(classifier.parameters()).device
        self.critic_net = AdversaryCritic(num_classes=params.num_classes).to(device).train()
        self.critic = self.replicate(self.critic_net)
        self.critic_optimizer, self.critic_schedule = replace(optimizer, lr=params.critic_lr).build(
            self.critic_net.parameters()
        )
        self.confidence = RunningClassConfidence(
            params.num_classes,
            decay=params.confidence_decay,
            device=device,
            all_reduce=self.all_reduce,
        )

    @property
    def pretrain_epochs(self) -> int:
        return self.params.pretrain_epochs

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"classifier": self.optimizer, "critic": self.critic_optimizer}

    def schedules(self) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        return {"classifier": self.schedule, "critic": self.critic_schedule}

    def critic_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.critic_net.state_dict().items()}

    def extra_state(self) -> dict[str, Any]:
        return {"class_confidence": self.confidence.state_dict()["values"]}

    def load_state(
        self,
        optimizer_state: Mapping[str, Any],
        critic_state: Mapping[str, torch.Tensor] | None,
        extra_state: Mapping[str, Any],
    ) -> None:
        if critic_state is None or "class_confidence" not in extra_state:
            raise ValueError("checkpoint lacks the critic's weights or the class confidences")
        self.critic_net.load_state_dict(critic_state)
        self.confidence.load_state_dict({"values": extra_state["class_confidence"]})
        super().load_state(optimizer_state, critic_state, extra_state)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, pretraining: bool) -> Metrics:
        logits = self.model(x)
        nll, metrics = classification_metrics(logits, y)
        self.confidence.update(logits)
        if pretraining:
            decay = sum(w.square().sum() for w in _decayed_weights(self.net)) / 2
            loss = nll + self.params.pretrain_weight_decay * decay
            return self._minimize(self.optimizer, loss, {"loss": loss, **metrics})
        return self._adversarial_step(x, y, logits, nll, metrics)

    def _adversarial_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        nll: torch.Tensor,
        metrics: Metrics,
    ) -> Metrics:
        probabilities = logits.detach().softmax(1)
        confidence, predicted = probabilities.max(1)
        target = closest_boundary_targets(self.net, x, predicted)
        target_confidence = self.confidence[target]
        x_adv = self._attack(x, target, target_confidence)
        with torch.no_grad():
            adv_predicted = self.net(x_adv.detach()).argmax(1)
        metrics.update(self._critic_step(x, y, x_adv.detach(), adv_predicted))

        success = adv_predicted != predicted
        fool, cycle = nll.new_zeros(()), nll.new_zeros(())
        if bool(success.any()):
            fool = _bce(self._frozen_critic(x_adv[success], adv_predicted[success]), real=True)
            x_back = self._attack(x_adv.detach()[success], predicted[success], confidence[success])
            cycle = (x[success] - x_back).flatten(1).square().sum(1).mean()
        loss = nll + self.params.lam * fool + self.params.cycle * cycle
        perturbation = (x_adv.detach() - x).flatten(1).norm(dim=1)
        metrics.update(
            loss=loss,
            fool=fool,
            cycle=cycle,
            attack_success=success.float().mean(),
            attack_l2=perturbation.mean(),
            target_confidence=target_confidence.mean(),
        )
        return self._minimize(self.optimizer, loss, metrics)

    def monitor(self, train: Batch, held_out: Batch) -> dict[str, float]:
        """The critic's accuracy (real vs adversarial) on training and held-out digits.

        Measured exactly as the critic is trained (noise on, adversarial examples from the
        training-form attack at the running C), on fixed samples and with a fixed noise seed,
        so the two figures differ only by the digits: the critic sees 4,000 digits hundreds
        of times on mnist-5k, and a held-out accuracy well below the training one would mean
        it learnt those digits rather than what adversarial images look like."""
        measured: dict[str, float] = {}
        device = train[0].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for name, (x, y) in (("train", train), ("heldout", held_out)):
                torch.manual_seed(0)
                real, adv = self._critic_accuracy(x, y)
                measured[f"critic_{name}_acc_real"] = real
                measured[f"critic_{name}_acc_adv"] = adv
                measured[f"critic_{name}_acc"] = (real + adv) / 2
        return measured

    def _critic_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            confidence, predicted = self.net(x).softmax(1).max(1)
        target = closest_boundary_targets(self.net, x, predicted)
        x_adv = high_confidence_attack_unrolled(
            self.net,
            x,
            target,
            self.confidence[target],
            steps=self.params.attack_steps,
            overshoot=self.params.attack_overshoot,
            clip=self.params.attack_clip,
            create_graph=False,
        ).detach()
        with torch.no_grad():
            adv_label = self.net(x_adv).argmax(1)
            real = self.critic_net(x, y) >= 0
            fake = self.critic_net(x_adv, adv_label) < 0
        return float(real.float().mean()), float(fake.float().mean())

    def _attack(
        self, x: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor
    ) -> torch.Tensor:
        """The training-form attack A_f, differentiable in the classifier's weights."""
        return high_confidence_attack_unrolled(
            self.net,
            x,
            target,
            confidence,
            steps=self.params.attack_steps,
            overshoot=self.params.attack_overshoot,
            clip=self.params.attack_clip,
        )

    def _frozen_critic(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The critic's logits with its weights held constant, gradients flowing to `x`."""
        weights = {name: p.detach() for name, p in self.critic_net.named_parameters()}
        return functional_call(self.critic_net, weights, (x, label))

    def _critic_step(
        self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, adv_label: torch.Tensor
    ) -> Metrics:
        batch = len(x)
        inputs = torch.cat([x.detach(), x_adv]).requires_grad_(True)
        logits = self.critic(inputs, torch.cat([y, adv_label]))
        (gradients,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
        real, fake = logits[:batch], logits[batch:]
        penalty = _unit_gradient_penalty(gradients[:batch]) + _unit_gradient_penalty(
            gradients[batch:]
        )
        loss = _bce(real, real=True) + _bce(fake, real=False) + self.params.grad_penalty * penalty
        metrics = {
            "critic_loss": loss,
            "critic_penalty": penalty,
            "critic_error_real": (real < 0).float().mean(),
            "critic_error_adv": (fake >= 0).float().mean(),
        }
        return self._minimize(self.critic_optimizer, loss, metrics)
