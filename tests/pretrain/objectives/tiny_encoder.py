"""The smallest encoder the objectives accept: ``embed_dim`` and ``embed(x) -> float[B, embed_dim]``."""

from __future__ import annotations

import torch
from torch import nn


class TinyEncoder(nn.Module):
    """Linear map of a flattened [2, 12] input to 6 features; ``constant=True`` gives a collapsed encoder
    (every input maps to the bias) that still has gradients."""

    embed_dim = 6

    def __init__(self, constant: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(2 * 12, self.embed_dim)
        self.constant = constant

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x.flatten(1))
        return h * 0 + self.lin.bias if self.constant else h
