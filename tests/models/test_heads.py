"""Projector / predictor and linear heads: layer structure, shapes, gradients and width checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.heads import LinearHead, MLPHead


def test_mlp_head_layers_and_shapes() -> None:
    head = MLPHead(6, [16, 16], 8)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.net[0].bias is None and head.net[-1].bias is not None  # BatchNorm replaces the bias
    x = torch.randn(5, 6, requires_grad=True)
    y = head(x)
    assert y.shape == (5, 8)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mlp_head_without_batch_norm_and_with_last_batch_norm() -> None:
    plain = MLPHead(4, [10], 3, batch_norm=False)
    assert [type(m) for m in plain.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert plain.net[0].bias is not None
    normed = MLPHead(4, [10], 3, last_batch_norm=True)
    last = normed.net[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    y = normed(torch.randn(64, 4))
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_mlp_head_with_no_hidden_layer_is_linear() -> None:
    head = MLPHead(4, [], 3)
    assert [type(m) for m in head.net] == [nn.Linear]
    x = torch.randn(2, 4)
    torch.testing.assert_close(head(x), x @ head.net[0].weight.T + head.net[0].bias)


def test_linear_head() -> None:
    head = LinearHead(6, 3)
    assert head.linear.bias.abs().sum() == 0
    assert head(torch.randn(4, 6)).shape == (4, 3)
    normed = LinearHead(6, 3, batch_norm=True)
    assert isinstance(normed.norm, nn.BatchNorm1d) and not normed.norm.affine


@pytest.mark.parametrize(
    ("build", "name"),
    [(lambda: MLPHead(0, [4], 2), "in_dim"), (lambda: MLPHead(4, [4, 0], 2), "hidden_dims[1]"),
     (lambda: MLPHead(4, [4], -1), "out_dim"), (lambda: LinearHead(4, 0), "out_dim"),
     (lambda: MLPHead(4, [2.5], 2), "hidden_dims[0]")],
)
def test_bad_widths_raise_one_line_value_error(build, name: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value).startswith(name + ":") and "\n" not in str(info.value)
