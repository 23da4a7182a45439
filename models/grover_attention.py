"""The attention of GROVER's multi-head blocks: :func:`molecule_attention` (tokens attend over the tokens of their
molecule, the corrected default) and :func:`token_head_attention` (the reference's attention over a token's own
heads, kept for its checkpoints). See :mod:`models.grover` for the measured difference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from models.grover_noise import SampleNoise

__all__ = ["molecule_attention", "token_head_attention"]


def molecule_attention(q: Tensor, k: Tensor, v: Tensor, index: Tensor, num_graphs: int,
                       dropout: float = 0.0, noise: SampleNoise | None = None) -> Tensor:
    """Scaled dot-product attention among tokens of the same molecule.

    Args:
        q, k, v: float[H, n, d], one row per head and token.
        index: int64[n] molecule of each token, sorted.
        num_graphs: number of molecules ``G`` (molecules without tokens are allowed).
        dropout: attention dropout probability.
        noise: with dropout, draw the attention-weight masks per molecule (:class:`SampleNoise`).

    Returns:
        float[H, n, d]: ``softmax(q_s k_t / sqrt(d))``-weighted sums of ``v_t`` over tokens ``t`` of the molecule
        of ``s``.
    """
    from torch_geometric.utils import to_dense_batch

    h, n, d = q.shape
    if n == 0:
        return q.new_zeros(q.shape)

    def dense(t: Tensor) -> tuple[Tensor, Tensor]:
        t, mask = to_dense_batch(t.permute(1, 0, 2).reshape(n, h * d), index, batch_size=num_graphs)
        return t.view(num_graphs, -1, h, d).transpose(1, 2), mask  # [G, H, L, d]

    qd, mask = dense(q)
    kd, _ = dense(k)
    vd, _ = dense(v)
    keys = mask.clone()
    keys[~mask.any(dim=1), 0] = True  # a molecule without tokens: its padded rows are discarded, keep them finite
    if noise is not None and dropout > 0:
        scores = torch.matmul(qd, kd.transpose(-1, -2)) / math.sqrt(d)
        weights = torch.softmax(scores.masked_fill(~keys[:, None, None, :], float("-inf")), dim=-1)
        keep = noise.attention_keep(h, weights.shape[-1], dropout)
        out = torch.matmul(weights * keep.to(weights.dtype) / (1.0 - dropout), vd)
    else:
        out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=keys[:, None, None, :], dropout_p=dropout)
    return out.transpose(1, 2)[mask].view(n, h, d).permute(1, 0, 2)


def token_head_attention(q: Tensor, k: Tensor, v: Tensor, dropout: float = 0.0) -> Tensor:
    """The reference's attention (``MultiHeadedAttention`` of tencent-ailab/grover), kept to reproduce its
    checkpoints: each token attends over its *own* ``H`` head vectors, never over other tokens.

    With ``H`` heads, every vector is split into ``H`` sub-heads of width ``d = hidden / H``; for token ``t`` and
    sub-head ``j``, ``o_{i,t,j} = sum_l softmax_l(q_{i,t,j} . k_{l,t,j} / sqrt(d)) v_{l,t,j}`` over the heads
    ``l``. With one head the output is ``v`` (a softmax over one element).

    Shapes: q, k, v float[H, n, hidden] -> float[H, n, hidden].
    """
    h, n, hidden = q.shape
    d = hidden // h

    def split(t: Tensor) -> Tensor:  # [H, n, hidden] -> [n, sub-head, H, d]
        return t.permute(1, 0, 2).reshape(n, h, h, d).transpose(1, 2)

    scores = torch.matmul(split(q), split(k).transpose(-1, -2)) / math.sqrt(d)
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout, training=dropout > 0)
    out = torch.matmul(weights, split(v))  # [n, sub-head, H, d]
    return out.transpose(1, 2).reshape(n, h, hidden).permute(1, 0, 2)
