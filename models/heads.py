"""Heads on top of pooled encoder features: MLP projectors / predictors and linear heads.

Objectives build projectors and predictors from :class:`MLPHead`; probes and fine-tuning use
:class:`LinearHead`. Bad widths raise ``ValueError`` with one line (``models`` never imports ``pretrain``;
objectives check their own options first and raise ``ConfigError`` naming the option).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LinearHead", "MLPHead"]


def _check_width(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")


class MLPHead(nn.Module):
    """Multi-layer perceptron projector / predictor (SimCLR, Barlow Twins, VICReg, BYOL).

    For hidden widths ``h_1..h_L``::

        x -> [Linear(h_i) -> BatchNorm1d -> ReLU] for i = 1..L -> Linear(out_dim) [-> BatchNorm1d(affine=False)]

    A Linear followed by BatchNorm has no bias (the norm's shift replaces it). ``last_batch_norm`` adds a
    non-affine BatchNorm on the output, as in the MoCo v3 / SimCLR v2 projectors.

    Args:
        in_dim: input width (the encoder's ``embed_dim``).
        hidden_dims: widths of the hidden layers; empty for a single linear layer.
        out_dim: output width.
        batch_norm: BatchNorm1d after each hidden linear layer.
        last_batch_norm: non-affine BatchNorm1d on the output.

    Shapes: ``[B, in_dim] -> [B, out_dim]``.

    >>> head = MLPHead(256, [1024], 128)
    >>> head(torch.randn(8, 256)).shape
    torch.Size([8, 128])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_width("in_dim", in_dim)
        _check_width("out_dim", out_dim)
        hidden_dims = list(hidden_dims)
        for i, width in enumerate(hidden_dims):
            _check_width(f"hidden_dims[{i}]", width)
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        width_in = in_dim
        for width in hidden_dims:
            layers.append(nn.Linear(width_in, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            width_in = width
        layers.append(nn.Linear(width_in, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearHead(nn.Module):
    """A linear classifier / regressor on frozen or fine-tuned features.

    ``y = W BN(x) + b``, where the optional non-affine BatchNorm standardises features whose scale varies
    between encoders (MAE's linear-probe protocol). Weights start small (std 0.01) and the bias at zero.

    Args:
        in_dim: feature width.
        out_dim: number of classes or regression targets.
        batch_norm: non-affine BatchNorm1d on the input features.

    Shapes: ``[B, in_dim] -> [B, out_dim]``.

    >>> LinearHead(256, 5)(torch.randn(4, 256)).shape
    torch.Size([4, 5])
    """

    def __init__(self, in_dim: int, out_dim: int, batch_norm: bool = False) -> None:
        super().__init__()
        _check_width("in_dim", in_dim)
        _check_width("out_dim", out_dim)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.norm: nn.Module = nn.BatchNorm1d(in_dim, affine=False) if batch_norm else nn.Identity()
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))
