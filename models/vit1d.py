"""1-D Vision Transformer for multi-lead biosignals (ECG-JEPA, Weimann & Conrad 2024).

A Conv1d with kernel = stride = ``patch_size`` samples runs over all leads at once, so each token holds every
lead for one 50 ms slice (25 samples at 500 Hz; 10 s -> 200 tokens). Fixed 1-D sin-cos positions are added,
``num_registers`` learnable register tokens (Darcet et al. 2024) are prepended, and pre-norm transformer
blocks follow. Sizes from the paper: ViT-XS 192/8/4 (3.6M), ViT-S 384/8/6 (14.3M), ViT-B 768/12/12 (85M).

Shapes:
    input float[B, C, T] with T a multiple of ``patch_size``; output float[B, N, D] patch tokens
    (N = T / patch_size, or K when ``keep`` int64[B, K] selects visible tokens), registers dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from models.transformer import Block, gather_tokens, init_patch_embed, init_weights, sincos_positions


class ViT1D(nn.Module):
    """ECG transformer encoder.

    Args:
        in_channels: number of leads C (12 for the standard ECG).
        patch_size: samples per token (25 = 50 ms at 500 Hz).
        dim, depth, num_heads, mlp_ratio: transformer width, depth, heads and MLP expansion.
        num_registers: learnable register tokens prepended to the sequence.
        qkv_bias, bias: biases of the attention input projection and of the other linear / LayerNorm layers
            (both off, as in the paper's configs).
        norm_eps: LayerNorm epsilon.
        patch_init: ``"trunc_normal"`` gives the patch embedding std 0.02 like every other layer (ECG-JEPA,
            I-JEPA); ``"fan_in"`` gives it std ``1 / sqrt(in_channels * patch_size)``
            (:func:`models.transformer.init_patch_embed`), so token content starts on the scale of the positions.
        patch_norm: LayerNorm each token's content before the positions are added (Swin's ``patch_norm``), so
            content has unit scale whatever the input's amplitude or number of filled leads. Off in the paper; on
            the shared records it removes the position-only plateau of short JEPA runs (see the ECG recipe).
        layer_scale: initial value of a learned per-channel gain on each residual branch (LayerScale; ECG-JEPA's
            ``layer_scale_eps``, 0 = off, as in all the paper's pretraining configs).

    >>> enc = ViT1D(in_channels=12, dim=64, depth=2, num_heads=4)
    >>> enc(torch.randn(2, 12, 5000)).shape
    torch.Size([2, 200, 64])
    """

    def __init__(self, in_channels: int = 12, patch_size: int = 25, dim: int = 192, depth: int = 8,
                 num_heads: int = 4, mlp_ratio: float = 4.0, num_registers: int = 1, qkv_bias: bool = False,
                 bias: bool = False, norm_eps: float = 1e-6, patch_init: str = "trunc_normal",
                 patch_norm: bool = False, layer_scale: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.embed_dim = dim
        self.patch_embed = nn.Conv1d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        if not isinstance(patch_norm, bool):
            raise ValueError(f"model.patch_norm: use true or false, got {patch_norm!r}")
        self.patch_norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias) if patch_norm else None
        self.registers = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, bias=bias, norm_eps=norm_eps, layer_scale=layer_scale)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        init_weights(self, depth)
        init_patch_embed(self.patch_embed, patch_init)
        if self.registers is not None:
            nn.init.trunc_normal_(self.registers, std=0.02)

    def num_tokens(self, n_samples: int) -> int:
        return n_samples // self.patch_size

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus positions, float[B, N, D] (before any masking)."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input [B, {self.in_channels}, T], got {list(x.shape)}")
        if x.shape[-1] % self.patch_size:
            raise ValueError(f"input length {x.shape[-1]} is not a multiple of the patch size {self.patch_size}")
        t = self.patch_embed(x).transpose(1, 2)
        if self.patch_norm is not None:
            t = self.patch_norm(t)
        return t + sincos_positions(t.shape[1], t.shape[2], t.device, t.dtype)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        t = self.tokens(x)
        if keep is not None:
            t = gather_tokens(t, keep)
        r = 0
        if self.registers is not None:
            r = self.registers.shape[1]
            t = torch.cat([self.registers.expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)[:, r:]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled token features, float[B, D] (the representation used by probes)."""
        return self.forward(x).mean(dim=1)


class ViT1DPredictor(nn.Module):
    """Narrow JEPA predictor: from visible-token features and positions, predict features of target tokens.

    Context features are projected to ``dim``, given their sin-cos positions, and concatenated with one
    learnable mask token per target position (plus that position's sin-cos code); after ``depth`` blocks the
    mask-token outputs are projected back to the encoder width.

    Shapes:
        ctx float[B, K, E], ctx_idx int64[B, K], tgt_idx int64[B, M] -> float[B, M, E]
    """

    def __init__(self, embed_dim: int, dim: int = 96, depth: int = 8, num_heads: int = 4, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, bias: bool = False, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.proj_in = nn.Linear(embed_dim, dim, bias=bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, bias=bias, norm_eps=norm_eps) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps, bias=bias)
        self.proj_out = nn.Linear(dim, embed_dim, bias=bias)
        init_weights(self, depth)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor, n_tokens: int) -> torch.Tensor:
        x = self.proj_in(ctx)
        pos = sincos_positions(n_tokens, x.shape[-1], x.device, x.dtype).expand(x.shape[0], -1, -1)
        x = x + gather_tokens(pos, ctx_idx)
        m = self.mask_token.to(x.dtype) + gather_tokens(pos, tgt_idx)
        h = torch.cat([x, m], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.proj_out(self.norm(h)[:, ctx.shape[1]:])
