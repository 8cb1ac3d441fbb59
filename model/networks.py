"""The paper's networks: the two classifiers and the k-output adversary critic.

Shapes and initialisation follow the authors' code (aam-at/adversary_critic): inputs are
images in [0, 1] of shape (N, 1, 28, 28); classifiers return logits; weights use He
(fan-in, normal) initialisation and biases start at zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from contract.names import canonical_network

IMAGE_SHAPE = (1, 28, 28)
NUM_PIXELS = 28 * 28


def _he_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(module.bias)


class FullyConnected(nn.Module):
    """784-1200-1200-1200-10 ReLU network (the paper's Table 1a)."""

    def __init__(self, num_classes: int = 10, hidden: tuple[int, ...] = (1200, 1200, 1200)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = NUM_PIXELS
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        self.apply(_he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LeNet5(nn.Module):
    """conv32 5x5 - pool - conv64 5x5 - pool - fc512 - fc10 (the paper's Table 1b)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )
        self.apply(_he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.reshape(-1, *IMAGE_SHAPE)))


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise while training; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


class AdversaryCritic(nn.Module):
    """The multiclass adversary critic of Figure 3.

    One logit per class; the label only selects which output is read, it is never an
    input to the hidden layers (the paper reports this is more stable than feeding it in).
    Noise std 0.1 on the input and 0.5 on each hidden layer's input, LeakyReLU(0.2).
    He (fan-in, normal) weights and zero biases, like the classifiers and the authors' critic
    (`critic_w_init` "msra"): with PyTorch's default init the hidden activations are ~0.1
    (std) against noise of std 0.5, so the critic would start drowned in its own noise.
    """

    def __init__(
        self,
        num_classes: int = 10,
        hidden: tuple[int, ...] = (1200, 1200),
        input_noise: float = 0.1,
        hidden_noise: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(input_noise)]
        width = NUM_PIXELS
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2), GaussianNoise(hidden_noise)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        self.apply(_he_init)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Logit that `x` is a real (not adversarial) example of class `label`, shape (N,)."""
        return self.layers(x).gather(1, label.long().view(-1, 1)).squeeze(1)


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "fc": FullyConnected,
    "lenet5": LeNet5,
}


def build_classifier(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised classifier by registry name ('fc' or 'lenet5')."""
    return CLASSIFIERS[canonical_network(name)](num_classes=num_classes)
