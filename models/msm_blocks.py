"""The blocks of MSM's sparse UNet (Hermosilla, Stippel & Sick, "Masked Scene Modeling", CVPR 2025; their
"transformer++" layout), used by :class:`models.sparse_unet.SparseUNet` with ``layout="msm"``: RMSNorm, the pre-norm
residual conv block, the serialised (Z-order, windowed) attention block, the conv bias kept outside the conv and the
gated additive skip. Their deliberate differences from MSM's code are listed in :mod:`models.sparse_unet`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import spconv.pytorch as spconv

__all__ = ["ChannelBias", "GatedSkip", "PreNormResBlock", "RMSNorm", "SerializedAttentionBlock", "morton_order",
           "windowed_attention"]


class RMSNorm(nn.Module):
    """``scale * x / (rms(x) + eps)`` over the last dim, ``rms(x) = ||x||_2 / sqrt(C)`` (Zhang & Sennrich, NeurIPS
    2019). The epsilon is added to the RMS, not under the square root, as in MSM's code."""

    def __init__(self, channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = float(eps)
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.norm(2, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return self.scale * (x / (rms + self.eps))


class PreNormResBlock(spconv.SparseModule):
    """MSM's residual block: ``x + gamma * RMSNorm(SubM(GELU(SubM(RMSNorm(x)))))`` (3x3x3 submanifold convs without
    bias, per-channel layer scale ``gamma`` initialised to 0.1)."""

    def __init__(self, channels: int, indice_key: str, eps: float = 1e-4, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.norm = RMSNorm(channels, eps)
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.norm_post = RMSNorm(channels, eps)
        self.gamma = nn.Parameter(torch.full((channels,), float(gamma_init)))

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        h = self.conv1(x.replace_feature(self.norm(x.features)))
        h = self.conv2(h.replace_feature(F.gelu(h.features)))
        return h.replace_feature(self.norm_post(h.features) * self.gamma + x.features)


def morton_order(indices: torch.Tensor, axes: Sequence[int] = (3, 2, 1), bits: int = 16) -> torch.Tensor:
    """Permutation sorting sites by (batch, Z-order code of the coordinates ``indices[:, axes]``), most
    significant axis first; the code interleaves the low ``bits`` bits of each coordinate."""
    c = indices.long()
    code = torch.zeros(len(c), dtype=torch.int64, device=c.device)
    for bit in range(bits):
        for j, a in enumerate(axes):
            code |= ((c[:, a] >> bit) & 1) << (3 * bit + 2 - j)
    return torch.argsort(c[:, 0] * (1 << (3 * bits)) + code, stable=True)


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, counts: Sequence[int],
                       half_window: int) -> torch.Tensor:
    """Softmax attention ``[N, H, D]`` inside each of the consecutive sequences of lengths ``counts``: query ``i``
    sees keys ``j`` of its sequence with ``|i - j| <= half_window`` (flash-attn's ``window_size=(w, w)``)."""
    out = torch.empty_like(q)
    start = 0
    for n in (int(c) for c in counts):
        qs, ks, vs = (t[start:start + n].transpose(0, 1) for t in (q, k, v))
        if n <= half_window + 1:
            out[start:start + n] = F.scaled_dot_product_attention(qs, ks, vs).transpose(0, 1)
        else:
            step = max(half_window, 1)
            for b0 in range(0, n, step):
                b1 = min(n, b0 + step)
                k0, k1 = max(0, b0 - half_window), min(n, b1 + half_window)
                i = torch.arange(b0, b1, device=q.device)[:, None]
                j = torch.arange(k0, k1, device=q.device)[None, :]
                o = F.scaled_dot_product_attention(qs[:, b0:b1], ks[:, k0:k1], vs[:, k0:k1],
                                                   attn_mask=(i - j).abs() <= half_window)
                out[start + b0:start + b1] = o.transpose(0, 1)
        start += n
    return out


class SerializedAttentionBlock(spconv.SparseModule):
    """Pre-norm transformer block on the sites of a level, serialised along a Z-order curve (MSM's "transformer++").

    ``f <- f + gamma_1 * W_o Attn(W_qkv RMSNorm(f))`` with windowed attention along the curve inside each scan
    (:func:`windowed_attention`, ``window // 2`` sites each side), then
    ``f <- f + gamma_2 * W_2 (GELU(a) * b)``, ``[a, b] = W_1 RMSNorm(f)`` (GLU MLP, hidden ``mlp_ratio * C``);
    no biases, layer scales initialised to 0.1. ``axes`` picks the coordinate order of the curve (MSM alternates
    curves between the blocks of a level).
    """

    def __init__(self, channels: int, heads: int, window: int = 1024, axes: Sequence[int] = (3, 2, 1),
                 mlp_ratio: int = 4, eps: float = 1e-4, gamma_init: float = 0.1) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"SerializedAttentionBlock: {channels} channels do not split into {heads} heads")
        self.heads, self.window, self.axes = int(heads), int(window), tuple(int(a) for a in axes)
        self.norm = RMSNorm(channels, eps)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.proj = nn.Linear(channels, channels, bias=False)
        self.gamma1 = nn.Parameter(torch.full((channels,), float(gamma_init)))
        self.mlp_norm = RMSNorm(channels, eps)
        self.fc1 = nn.Linear(channels, 2 * mlp_ratio * channels, bias=False)
        self.fc2 = nn.Linear(mlp_ratio * channels, channels, bias=False)
        self.gamma2 = nn.Parameter(torch.full((channels,), float(gamma_init)))

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        f = x.features
        n, c = f.shape
        order = morton_order(x.indices, self.axes)
        counts = torch.bincount(x.indices[order, 0].long()).tolist()
        qkv = self.qkv(self.norm(f)[order]).view(n, 3, self.heads, c // self.heads)
        a = windowed_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], counts, self.window // 2).reshape(n, c)
        a = torch.empty_like(a).index_copy_(0, order, self.proj(a))
        f = f + self.gamma1 * a
        g, h = self.fc1(self.mlp_norm(f)).chunk(2, dim=-1)
        f = f + self.gamma2 * self.fc2(F.gelu(g) * h)
        return x.replace_feature(f)


class ChannelBias(nn.Module):
    """``x + b``: the bias of a sparse conv kept outside it (spconv's CPU kernels refuse a fused bias in eval)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class GatedSkip(nn.Module):
    """MSM's decoder skip: ``up * gamma + W RMSNorm(skip) + b`` (``gamma`` initialised to 1)."""

    def __init__(self, skip_channels: int, channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.norm = RMSNorm(skip_channels, eps)
        self.linear = nn.Linear(skip_channels, channels)
        self.gamma = nn.Parameter(torch.ones(channels))

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return up * self.gamma + self.linear(self.norm(skip))
