"""Transformer building blocks shared by every token-based encoder (pre-norm ViT blocks, sin-cos positions)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sincos_positions(n: int, dim: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed 1-D sine-cosine positions (Vaswani et al. 2017), float[n, dim].

    Column ``2i`` holds ``sin(p / 10000^(2i/dim))`` and column ``2i+1`` the cosine, so any sequence
    length works with the same weights (ECG crops of other durations, short probe windows).
    """
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got {dim}")
    pos = torch.arange(n, device=device, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
    out = torch.empty(n, dim, device=device, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out.to(dtype)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (fused kernels where available)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` with a GELU MLP.

    With ``layer_scale > 0`` each branch is multiplied by a learned per-channel gain initialised to that value
    (LayerScale, Touvron et al. 2021, CaiT): ``x + g_a * Attn(LN(x))``, ``x + g_m * MLP(LN(x))``; ECG-JEPA's
    ``layer_scale_eps``. Off (no parameters) by default.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 bias: bool = False, norm_eps: float = 1e-6, layer_scale: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, bias=bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=bias), nn.GELU(), nn.Linear(hidden, dim, bias=bias))
        self.attn_scale = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale else None
        self.mlp_scale = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = x + (a if self.attn_scale is None else a * self.attn_scale)
        m = self.mlp(self.norm2(x))
        return x + (m if self.mlp_scale is None else m * self.mlp_scale)


def init_weights(module: nn.Module, depth: int = 0) -> None:
    """Truncated-normal (std 0.02) linear and convolution weights, zero biases, unit LayerNorms (ViT / I-JEPA /
    ECG-JEPA). With ``depth``, the projections that write into the residual stream (``attn.proj`` and the
    MLP's output layer of each :class:`Block`) get std ``0.02 / sqrt(2 * depth)`` (GPT-2, ECG-JEPA), so the
    residual stream's variance at initialisation does not grow with depth."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if depth > 0:
        for m in module.modules():
            if isinstance(m, Block):
                for layer in (m.attn.proj, m.mlp[-1]):
                    nn.init.trunc_normal_(layer.weight, std=0.02 / math.sqrt(2 * depth))


PATCH_INITS = ("trunc_normal", "fan_in")


def init_patch_embed(layer: nn.Linear | nn.Conv1d, mode: str) -> None:
    """Initialise a token embedding: ``"trunc_normal"`` leaves :func:`init_weights`' std 0.02; ``"fan_in"`` draws
    LeCun-normal weights, std ``1 / sqrt(fan_in)`` truncated at 2 std (rescaled by 1 / 0.8796 so the truncation
    keeps that std), so unit-variance inputs give token content of unit variance, the scale of the sin-cos
    positions (timm's and MAE's patch embeddings are fan-in scaled too)."""
    if mode not in PATCH_INITS:
        raise ValueError(f"model.patch_init: use {' or '.join(repr(m) for m in PATCH_INITS)}, got {mode!r}")
    if mode == "fan_in":
        fan_in = layer.weight[0].numel()
        std = fan_in ** -0.5 / 0.87962566
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b, j], :]`` for x float[B, N, D] and idx int64[B, K] -> float[B, K, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
