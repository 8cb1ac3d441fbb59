"""What every defense shares: its optimizer, its schedule, and one training step.

A defense owns the optimisation of the classifier it is given (and of any model of its own,
like the adversary critic), because the defenses do not agree on what one step is: the
baselines minimise one objective, the adversary critic alternates two. The training loop
only feeds batches, so a new defense never touches the loop.

Two views of the classifier are kept apart on purpose:
- `self.model` is what the optimizer's gradients must flow through for multi-process
  training (a `DistributedDataParallel` wrapper under torchrun, else the network itself).
  Each step makes exactly one forward pass through it, which arms DDP's gradient all-reduce.
- `self.net` is the bare network, used for every other forward pass (attacks, Jacobians):
  gradients of the final loss still reach its parameters and are all-reduced once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from model.defenses.params import NoParams

Metrics = dict[str, torch.Tensor]
# Images (N, 1, 28, 28) in [0, 1] and their int64 labels.
Batch = tuple[torch.Tensor, torch.Tensor]
# Called with a step's metrics before any weight changes; raises if they show divergence.
MetricsGuard = Callable[[Metrics], None]
# Wraps a module for multi-process training (DDP) or returns it unchanged.
Replicate = Callable[[nn.Module], nn.Module]
# Sums a tensor over all processes in place (the identity in a single process).
AllReduce = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class OptimizerSettings:
    """Adam and a step schedule: the learning rate is multiplied by `decay_factor`
    after every `decay_every` (non-pretraining) epochs."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    decay_every: int = 1
    decay_factor: float = 1.0

    def build(self, parameters: Any) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
        optimizer = torch.optim.Adam(parameters, lr=self.lr, betas=self.betas)
        schedule = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.decay_every, gamma=self.decay_factor
        )
        return optimizer, schedule


def _no_guard(metrics: Metrics) -> None:
    return None


def _same_module(module: nn.Module) -> nn.Module:
    return module


def _single_process(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class Defense(ABC):
    """A way of training a classifier. Subclasses set the class attributes and `train_step`.

    Args:
        classifier: the bare network to train (already on its device).
        params: the defense's hyperparameters (an instance of `Params`).
        optimizer: the classifier's optimizer settings.
        replicate: wraps a module for multi-process training.
        guard: called with each step's metrics before the weights change.
        all_reduce: sums a tensor over processes, for state kept outside the weights.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    # The paper preset's optimizer for this defense (the CPU preset rescales the schedule).
    default_optimizer: ClassVar[OptimizerSettings]

    def __init__(
        self,
        classifier: nn.Module,
        params: Any,
        optimizer: OptimizerSettings,
        *,
        replicate: Replicate = _same_module,
        guard: MetricsGuard = _no_guard,
        all_reduce: AllReduce = _single_process,
    ) -> None:
        self.net = classifier
        self.model = replicate(classifier)
        self.params = params
        self.guard = guard
        self.all_reduce = all_reduce
        self.replicate = replicate
        self.optimizer, self.schedule = optimizer.build(classifier.parameters())

    @property
    def pretrain_epochs(self) -> int:
        """Epochs of plain training before the defense starts (only the critic uses them)."""
        return 0

    @abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, pretraining: bool) -> Metrics:
        """One optimisation step on a batch; returns detached scalar metrics incl. `loss`."""

    def end_epoch(self, *, pretraining: bool) -> None:
        """Advances the learning-rate schedules after a training epoch."""
        if not pretraining:
            for schedule in self.schedules().values():
                schedule.step()

    def monitor(self, train: Batch, held_out: Batch) -> dict[str, float]:
        """Diagnostics of state the defense trains besides the classifier, measured after an
        epoch on a fixed sample of training digits and one of held-out digits (the same
        measurement on both, so a gap between them is overfitting). Nothing is trained."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"classifier": self.optimizer}

    def schedules(self) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        return {"classifier": self.schedule}

    def learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers().items()}

    def critic_state(self) -> dict[str, torch.Tensor] | None:
        """Weights of a model the defense trains besides the classifier, if any."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """State a resumed run (or a later stage, e.g. the stimuli) needs from this defense."""
        return {}

    def optimizer_state(self) -> dict[str, Any]:
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers().items()},
            "schedules": {name: sch.state_dict() for name, sch in self.schedules().items()},
        }

    def load_state(
        self,
        optimizer_state: Mapping[str, Any],
        critic_state: Mapping[str, torch.Tensor] | None,
        extra_state: Mapping[str, Any],
    ) -> None:
        """Restores what `optimizer_state`, `critic_state` and `extra_state` saved."""
        for name, opt in self.optimizers().items():
            opt.load_state_dict(optimizer_state["optimizers"][name])
        for name, sch in self.schedules().items():
            sch.load_state_dict(optimizer_state["schedules"][name])

    def _minimize(
        self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, metrics: Metrics
    ) -> Metrics:
        """Guard, backpropagate, step; the weights never see a diverged loss."""
        metrics = {name: value.detach() for name, value in metrics.items()}
        self.guard(metrics)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return metrics


class SingleObjectiveDefense(Defense):
    """A defense that minimises one loss of the classifier per step (all baselines)."""

    @abstractmethod
    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """The loss to minimise on a batch, and the terms to log (the loss included)."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, pretraining: bool) -> Metrics:
        loss, metrics = self.objective(x, y)
        return self._minimize(self.optimizer, loss, {"loss": loss, **metrics})
