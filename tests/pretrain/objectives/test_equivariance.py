"""Equivariance by classification: the loss, the transforms, learning, and bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pretrain.config import ConfigError
from pretrain.objectives.equivariance import Equivariance, EquivarianceClassificationLoss


def cross_entropy_ref(logits: np.ndarray, target: np.ndarray) -> float:
    total = 0.0
    for row, k in zip(logits, target):
        total += -(row[k] - math.log(sum(math.exp(v) for v in row)))
    return total / len(target)


def test_loss_matches_reference_value_and_gradient() -> None:
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(5, 4))
    target = np.array([0, 3, 1, 1, 2])
    t = torch.tensor(logits, requires_grad=True)
    loss = EquivarianceClassificationLoss()(t, torch.tensor(target))
    assert loss.item() == pytest.approx(cross_entropy_ref(logits, target), rel=1e-12)
    (g,) = torch.autograd.grad(loss, (t,))
    # d/dlogits of the mean cross-entropy: (softmax - onehot) / n.
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = (soft - np.eye(4)[target]) / len(target)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-10)


class TinyEncoder(nn.Module):
    embed_dim = 16

    def __init__(self, channels: int = 2, length: int = 32) -> None:
        super().__init__()
        self.lin = nn.Linear(channels * length, self.embed_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x.flatten(1)))


def test_each_sample_gets_the_transform_of_its_label() -> None:
    objective = Equivariance(TinyEncoder())
    x = torch.randn(4, 2, 32)
    out = objective.apply_transforms(x, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1], x[1].flip(-1))
    torch.testing.assert_close(out[2], -x[2])
    torch.testing.assert_close(out[3], -x[3].flip(-1))


def test_image_rotations_plug_in_by_name_and_callables_are_accepted() -> None:
    objective = Equivariance(TinyEncoder(1, 16), transforms=["identity", "rot90", "rot180", "rot270"])
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(4, 1, 1, 1)
    out = objective.apply_transforms(x, torch.tensor([0, 1, 2, 3]))
    for k in range(4):
        torch.testing.assert_close(out[k], torch.rot90(x[k], k, dims=(-2, -1)))
    custom = Equivariance(TinyEncoder(), transforms=[lambda v: v, lambda v: v * 0])
    assert custom.head.out_dim == 2


def test_encoder_learns_to_recognise_the_transforms() -> None:
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 32)
    base = torch.stack([t**2, torch.exp(-5 * t)])  # asymmetric in time and in sign
    objective = Equivariance(TinyEncoder(), head_hidden_dim=32)
    optimiser = torch.optim.Adam(objective.parameters(), lr=1e-2)
    for _ in range(60):
        x = base * (1 + 0.3 * torch.rand(32, 1, 1)) + 0.05 * torch.randn(32, 2, 32)
        out = objective({"signal": x})
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    assert out["accuracy"].item() > 0.9
    assert out["classification"].item() < 0.5


def test_continuous_variant_regresses_the_parameter() -> None:
    torch.manual_seed(0)
    objective = Equivariance(TinyEncoder(), continuous="scale", continuous_range=(0.5, 2.0), head_hidden_dim=32)
    out = objective({"signal": torch.randn(8, 2, 32)})
    assert set(out) == {"loss", "classification", "accuracy", "regression"}
    assert out["loss"].item() == pytest.approx(out["classification"].item() + out["regression"].item(), rel=1e-6)
    out["loss"].backward()
    assert objective.regressor is not None and objective.regressor.net[0].weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"transforms": ["identity"]}, "objective.transforms"),
        ({"transforms": ["identity", "spin"]}, "objective.transforms"),
        ({"head_hidden_dim": 0}, "objective.head_hidden_dim"),
        ({"continuous": "warp"}, "objective.continuous"),
        ({"continuous_range": (2.0, 1.0)}, "objective.continuous_range"),
        ({"label_smoothing": -0.1}, "objective.label_smoothing"),
    ],
)
def test_bad_hyper_parameters_raise_config_error(kwargs: dict, option: str) -> None:
    with pytest.raises(ConfigError) as info:
        Equivariance(TinyEncoder(), **kwargs)
    assert str(info.value).startswith(option + ":") and "\n" not in str(info.value)


def test_shape_changing_transform_is_refused() -> None:
    objective = Equivariance(TinyEncoder(), transforms=["identity", "rot90"])
    with pytest.raises(ConfigError, match="objective.transforms: 'rot90' changes the shape"):
        objective.apply_transforms(torch.randn(2, 1, 3, 5), torch.tensor([0, 1]))
