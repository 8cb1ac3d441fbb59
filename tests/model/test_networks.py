"""The paper's networks have the documented shapes, initialisation and critic behaviour."""

from __future__ import annotations

import pytest
import torch

from contract.names import canonical_network
from model.networks import AdversaryCritic, FullyConnected, LeNet5, build_classifier


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("fc", 784 * 1200 + 1200 + 2 * (1200 * 1200 + 1200) + 1200 * 10 + 10),
        ("lenet5", 32 * 25 + 32 + 64 * 32 * 25 + 64 + 1024 * 512 + 512 + 512 * 10 + 10),
    ],
)
def test_classifier_shapes(name: str, parameters: int) -> None:
    net = build_classifier(name)
    assert sum(p.numel() for p in net.parameters()) == parameters
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in net.modules()
        if hasattr(m, "bias") and m.bias is not None
    )


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    first = FullyConnected().layers[1].weight.detach()
    assert float(first.std()) == pytest.approx((2 / 784) ** 0.5, rel=0.02)


def test_lenet_accepts_flat_or_strided_inputs() -> None:
    net = LeNet5().eval()
    images = torch.rand(2, 1, 28, 56)[..., ::2]  # non-contiguous
    torch.testing.assert_close(net(images), net(images.contiguous()))


def test_critic_reads_the_label_only_to_pick_its_output() -> None:
    critic = AdversaryCritic().eval()
    x = torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 3, 3, 9])
    all_outputs = critic.layers(x)
    torch.testing.assert_close(critic(x, labels), all_outputs[torch.arange(4), labels])
    assert critic(x, labels).shape == (4,)


def test_critic_noise_only_while_training() -> None:
    critic = AdversaryCritic()
    x, labels = torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    critic.train()
    assert not torch.equal(critic(x, labels), critic(x, labels))
    critic.eval()
    assert torch.equal(critic(x, labels), critic(x, labels))
    stds = [m.std for m in critic.modules() if type(m).__name__ == "GaussianNoise"]
    assert stds == [0.1, 0.5, 0.5]
    assert [m.negative_slope for m in critic.modules() if isinstance(m, torch.nn.LeakyReLU)] == [
        0.2,
        0.2,
    ]


def test_critic_initialised_like_the_authors(mnist5k_test_set) -> None:
    """He-normal fan-in weights, zero biases ("msra" in the authors' code): the hidden signal
    is ~0.3 (std) on real digits, not ~0.1 as with PyTorch's default init, and the gradient
    penalty starts near 0.2 per term instead of near 0.8."""
    torch.manual_seed(0)
    critic = AdversaryCritic().eval()
    linears = [m for m in critic.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] == [784, 1200, 1200]
    for layer in linears:
        assert float(layer.bias.detach().abs().max()) == 0
        expected = (2 / layer.in_features) ** 0.5
        assert float(layer.weight.detach().std()) == pytest.approx(expected, rel=0.02)

    images, labels = mnist5k_test_set.tensors
    hidden, signal = images.flatten(1), []
    with torch.no_grad():
        for module in critic.layers:
            hidden = module(hidden)
            if isinstance(module, torch.nn.LeakyReLU):
                signal.append(float(hidden.std()))
    assert all(std > 0.25 for std in signal), signal

    inputs = images[:500].clone().requires_grad_(True)
    (gradients,) = torch.autograd.grad(critic(inputs, labels[:500]).sum(), inputs)
    penalty = float((gradients.flatten(1).norm(dim=1) - 1).square().mean())
    assert penalty < 0.4, penalty


def test_unknown_network_name() -> None:
    assert canonical_network("LeNet-5") == "lenet5"
    with pytest.raises(ValueError, match="unknown network 'resnet'; choose one of: fc, lenet5"):
        build_classifier("resnet")
