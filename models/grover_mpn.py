"""GROVER's dynamic message passing (dyMPN): the query / key / value networks of a multi-head block, with a hop
count drawn per forward pass in training (the reference's "truncnorm" dynamic depth).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.grover_graph import MoleculeGraph, with_padding
from models.grover_noise import SampleNoise, noisy_dropout

__all__ = ["DyMPN", "truncated_normal_depth"]


def truncated_normal_depth(mean: int, sigma: float, generator: torch.Generator | None = None) -> int:
    """A hop count ``round(mean + sigma z)``, ``z ~ N(0, 1)`` truncated to ``|z| <= 3``, at least 1.

    Drawn from ``generator`` (default: torch's global generator, which the training loop reseeds every step).
    """
    if sigma <= 0:
        return mean
    while True:
        z = float(torch.randn((), generator=generator))
        if abs(z) <= 3.0:
            return max(1, round(mean + sigma * z))


class DyMPN(nn.Module):
    """``streams`` message-passing networks with their own weights over atoms (``view="atom"``) or directed bonds
    (``view="bond"``), run as one batched matmul, with dynamic depth.

    ``m^0 = h``; ``m^{t+1}_s = dropout(PReLU_s(h + A(m^t_s) W_s))`` for ``t < K``, where ``A`` sums the neighbouring
    atoms' messages (atom view) or the messages into the bond's source atom minus the reverse bond's (bond view).
    ``K`` is drawn by :func:`truncated_normal_depth` in training and equals ``depth`` in eval mode; the last ``K``
    is kept in :attr:`last_depth`.

    Shapes: ``h`` float[n, hidden] -> float[streams, n, hidden].
    """

    def __init__(self, hidden: int, streams: int, depth: int, depth_sigma: float = 1.0, view: str = "atom",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if view not in ("atom", "bond"):
            raise ValueError(f"view: 'atom' or 'bond', got {view!r}")
        self.view, self.depth, self.depth_sigma = view, depth, depth_sigma
        bound = 1.0 / math.sqrt(hidden)  # nn.Linear's default initialisation, per network
        self.weight = nn.Parameter(torch.empty(streams, hidden, hidden).uniform_(-bound, bound))
        self.slope = nn.Parameter(torch.full((streams,), 0.25))  # PReLU slope per network
        self.dropout = nn.Dropout(dropout)
        self.last_depth = depth

    def forward(self, h: Tensor, graph: MoleculeGraph, noise: SampleNoise | None = None) -> Tensor:
        gen = noise.generator if noise is not None else None
        k = truncated_normal_depth(self.depth, self.depth_sigma, gen) if self.training else self.depth
        self.last_depth = k
        streams = self.weight.shape[0]
        m = h  # float[n, hidden] until the first hop: every network starts from the same messages
        padded = graph.fill is not None  # the last token is the reference's padding atom / bond
        for _ in range(k):
            d = m.dim() - 2  # the token dimension: 0 before the first hop, then 1
            if self.view == "atom":
                agg = m.new_zeros(m.shape).index_add_(d, graph.dst, m[..., graph.src, :])
                if padded:
                    agg = with_padding(agg[..., :-1, :], m[..., -1:, :], graph)
            else:
                real = m[..., :-1, :] if padded else m
                shape = (*m.shape[:d], graph.num_atoms, m.shape[-1])
                into = m.new_zeros(shape).index_add_(d, graph.dst, real)
                if padded:
                    into = with_padding(into, m[..., -1:, :], graph)
                agg = into[..., graph.src, :] - real[..., graph.rev, :]
                if padded:  # the padding bond runs from the padding atom and is its own reverse
                    agg = torch.cat([agg, into[..., -1:, :] - m[..., -1:, :]], dim=-2)
            z = h + torch.matmul(agg, self.weight.to(agg.dtype))  # [n, h] or [S, n, h] @ [S, h, h] -> [S, n, h]
            # networks as PReLU channels: one fused kernel instead of where() + mul
            m = noisy_dropout(self.dropout, F.prelu(z.reshape(1, streams, -1), self.slope.to(z.dtype)).view_as(z), noise,
                      self.view)
        return m if m.dim() == 3 else m.unsqueeze(0).expand(streams, -1, -1)
