"""Channel-independent EEG transformer with a vector-quantised codebook (EEGFormer, Chen et al. 2024).

Every channel is encoded on its own (channels are folded into the batch), so one set of weights serves
recordings with any number and any montage of electrodes. A channel's signal is cut into non-overlapping
segments of ``patch_size`` samples; each segment becomes a frequency-domain token, the log-magnitude of its
Hann-windowed FFT,

    s_{c,n}(f) = log(1 + |FFT(w * x_c[nP : (n+1)P])(f)|),   f = 0 .. P/2,

embedded linearly, given 1-D sin-cos time positions and passed through pre-norm transformer blocks that only
see the tokens of the same channel. :class:`VectorQuantizer` maps each output token to the nearest entry of a
learned codebook (the discrete, interpretable patterns of the paper), and :class:`SpectralDecoder`, a shallow
transformer owned by the training objective, reconstructs the token spectra ``s`` from the quantised tokens.

Shapes:
    input float[B, C, T] with T a multiple of ``patch_size`` (any C); ``channel_tokens`` float[B, C, N, D];
    ``forward(x, keep)`` float[B, N, D] (or [B, K, D]): the channel mean of the per-channel tokens, the token
    interface of :class:`pretrain.objectives.jepa.JEPA`; ``embed`` float[B, D], the mean over tokens and
    channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.transformer import Block, gather_tokens, init_patch_embed, init_weights, sincos_positions

__all__ = ["EEGFormer", "SpectralDecoder", "VectorQuantizer", "patch_spectra"]


def patch_spectra(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Log-magnitude spectra of non-overlapping Hann-windowed segments.

    Shapes:
        x float[..., T] with T a multiple of ``patch_size`` -> float[..., T / patch_size, patch_size // 2 + 1]
    """
    if x.shape[-1] % patch_size:
        raise ValueError(f"input length {x.shape[-1]} is not a multiple of the patch size {patch_size}")
    seg = x.unflatten(-1, (x.shape[-1] // patch_size, patch_size)).float()
    window = torch.hann_window(patch_size, periodic=False, device=x.device, dtype=seg.dtype)
    return torch.log1p(torch.fft.rfft(seg * window, dim=-1).abs())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with an EMA codebook and dead-code restarts (VQ-VAE, van den Oord et
    al. 2017; EMA updates, Razavi et al. 2019; factorised l2-normalised codes, Yu et al. 2022).

    Tokens are projected to ``code_dim`` and l2-normalised, ``z = normalize(W h)``; the code of a token is
    ``k = argmax_j <z, e_j>`` over unit-norm codebook rows ``e_j`` (the nearest code in Euclidean distance).
    The quantised token passes the gradient straight through, ``z_q = z + sg(e_k - z)``, and the commitment loss
    is ``mean ||z - sg(e_k)||^2`` (summed over ``code_dim``, averaged over tokens). The codebook is not trained
    by gradients: :meth:`update` moves each code to the EMA of the tokens assigned to it,

        N_j <- d N_j + (1 - d) n_j,   m_j <- d m_j + (1 - d) sum_{i: k_i = j} z_i,   e_j = normalize(m_j),

    and restarts a *dead* code (EMA count ``N_j`` below ``dead_threshold``) at a random token of the batch with
    ``N_j = 1``, so the codebook cannot collapse onto a few entries. Counts start at 0: the first training step
    restarts every code at a token of the data (a random-sample k-means initialisation). Everything the codebook
    holds is a buffer.

    Args:
        dim: width of the incoming tokens.
        codebook_size: number of codes K.
        code_dim: width of the (normalised) code space.
        decay: EMA decay d.
        dead_threshold: EMA count below which a code is restarted.
    """

    def __init__(self, dim: int, codebook_size: int = 256, code_dim: int = 32, decay: float = 0.95,
                 dead_threshold: float = 0.5) -> None:
        super().__init__()
        if codebook_size < 2 or code_dim < 1:
            raise ValueError(f"codebook_size must be >= 2 and code_dim >= 1, got {codebook_size} and {code_dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"codebook decay must be in [0, 1), got {decay}")
        self.codebook_size, self.code_dim, self.decay = codebook_size, code_dim, decay
        self.dead_threshold = dead_threshold
        self.proj = nn.Linear(dim, code_dim)
        codes = F.normalize(torch.randn(codebook_size, code_dim), dim=-1)
        self.register_buffer("codebook", codes)
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", codes.clone())

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Unit-norm code-space vectors float[..., code_dim] of tokens float[..., dim]."""
        return F.normalize(self.proj(h).float(), dim=-1)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """int64[...] index of the nearest code of each unit-norm z float[..., code_dim]."""
        return (z @ self.codebook.t()).argmax(dim=-1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise tokens h float[..., dim].

        Returns ``(z_q, codes, commitment, z)``: straight-through quantised vectors float[..., code_dim], code
        indices int64[...], the commitment loss (scalar) and the unquantised unit vectors z.
        """
        z = self.project(h)
        codes = self.assign(z.detach())
        e = self.codebook[codes]
        commitment = (z - e).pow(2).sum(-1).mean()
        z_q = z + (e - z).detach()
        return z_q, codes, commitment, z

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """One EMA step of the codebook from unit vectors z float[M, code_dim] and their codes int64[M]; returns
        the number of restarted dead codes. Under ``torch.distributed`` the statistics are summed over ranks
        and restarts are drawn by rank 0 from the tokens of every rank (as one process would draw from the whole
        batch) and broadcast, so every process keeps the same codebook."""
        z = z.detach().reshape(-1, self.code_dim).float()
        codes = codes.reshape(-1)
        onehot = F.one_hot(codes, self.codebook_size).to(z.dtype)
        count, total = onehot.sum(0), onehot.t() @ z
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            torch.distributed.all_reduce(count)
            torch.distributed.all_reduce(total)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        dead = self.ema_count < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            if distributed:
                parts = [torch.empty_like(z) for _ in range(torch.distributed.get_world_size())]
                torch.distributed.all_gather(parts, z.contiguous())
                z = torch.cat(parts)
            pick = torch.randint(0, z.shape[0], (n_dead,), generator=generator, device=z.device)
            fresh = z[pick]
            if distributed:
                torch.distributed.broadcast(fresh, 0)
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0  # a restarted code gets one token's worth of history
        self.codebook.copy_(F.normalize(self.ema_sum, dim=-1))
        return n_dead


class EEGFormer(nn.Module):
    """Channel-independent frequency-token transformer encoder with a VQ codebook.

    Args:
        in_channels: expected channel count, or ``None`` for any (the weights never depend on it).
        patch_size: samples per token (32 = 0.25 s at 128 Hz, 17 frequency bins of 4 Hz).
        dim, depth, num_heads, mlp_ratio: transformer width, depth, heads and MLP expansion.
        codebook_size, code_dim, codebook_decay, dead_threshold: the :class:`VectorQuantizer`.
        norm_eps: LayerNorm epsilon.
        patch_init: token-embedding initialisation, ``"trunc_normal"`` (std 0.02) or ``"fan_in"``
            (:func:`models.transformer.init_patch_embed`).

    >>> enc = EEGFormer(dim=32, depth=1, num_heads=4, codebook_size=16)
    >>> enc.embed(torch.randn(2, 5, 512)).shape, enc(torch.randn(2, 3, 512)).shape
    (torch.Size([2, 32]), torch.Size([2, 16, 32]))
    """

    def __init__(self, in_channels: int | None = None, patch_size: int = 32, dim: int = 128, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, codebook_size: int = 256, code_dim: int = 32,
                 codebook_decay: float = 0.95, dead_threshold: float = 0.5, norm_eps: float = 1e-6,
                 patch_init: str = "trunc_normal") -> None:
        super().__init__()
        if patch_size < 4:
            raise ValueError(f"patch_size must be >= 4 samples, got {patch_size}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.n_freqs = patch_size // 2 + 1
        self.embed_dim = dim
        self.patch_embed = nn.Linear(self.n_freqs, dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=True, bias=True, norm_eps=norm_eps)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        init_weights(self, depth)
        init_patch_embed(self.patch_embed, patch_init)
        self.quantizer = VectorQuantizer(dim, codebook_size, code_dim, codebook_decay, dead_threshold)

    def num_tokens(self, n_samples: int) -> int:
        return n_samples // self.patch_size

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3:
            raise ValueError(f"expected input [B, C, T], got {list(x.shape)}")
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input {list(x.shape)}")

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """Token spectra (the reconstruction target), float[B, C, N, patch_size // 2 + 1]."""
        self._check(x)
        return patch_spectra(x, self.patch_size)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded frequency tokens plus time positions, channels folded into the batch: float[B * C, N, D]."""
        s = self.spectra(x).flatten(0, 1).to(self.patch_embed.weight.dtype)
        t = self.patch_embed(s)
        return t + sincos_positions(t.shape[1], t.shape[2], t.device, t.dtype)

    def channel_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output per channel, float[B, C, N, D] (or [B, C, K, D] for visible tokens ``keep`` int64[B, K],
        the same time positions in every channel)."""
        b, c = x.shape[0], x.shape[1]
        t = self.tokens(x)
        if keep is not None:
            t = gather_tokens(t, keep.repeat_interleave(c, dim=0))
        for block in self.blocks:
            t = block(t)
        return self.norm(t).unflatten(0, (b, c))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Channel-mean token features float[B, N, D] (or [B, K, D]): each time position's features averaged over
        channels, so token-level objectives (JEPA) work for any channel count."""
        return self.channel_tokens(x, keep).mean(dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over tokens and channels, float[B, D] (the representation used by probes)."""
        return self.channel_tokens(x).mean(dim=(1, 2))

    def embed_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel features, the mean over each channel's tokens, float[B, C, D]: for heads that need the montage
        (e.g. the lateralisation of motor imagery), which :meth:`embed` averages away."""
        return self.channel_tokens(x).mean(dim=2)

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Discrete code of every token, int64[B, C, N]."""
        return self.quantizer.assign(self.quantizer.project(self.channel_tokens(x)))


class SpectralDecoder(nn.Module):
    """Shallow transformer that reconstructs token spectra from quantised codes (the EEGFormer decoder).

    Codes float[M, N, code_dim] are projected to ``dim``, given sin-cos positions, passed through ``depth``
    pre-norm blocks (over the tokens of one channel) and projected to ``n_freqs`` log-magnitudes.

    Shapes:
        float[M, N, code_dim] -> float[M, N, n_freqs]
    """

    def __init__(self, code_dim: int, n_freqs: int, dim: int = 128, depth: int = 1, num_heads: int = 4,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.proj_in = nn.Linear(code_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=True, bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj_out = nn.Linear(dim, n_freqs)
        init_weights(self, depth)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(z_q)
        h = h + sincos_positions(h.shape[1], h.shape[2], h.device, h.dtype)
        for block in self.blocks:
            h = block(h)
        return self.proj_out(self.norm(h))


def codebook_perplexity(codes: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """``(usage, perplexity)`` of code assignments int64[...]: the fraction of the ``codebook_size`` codes used at
    least once, and ``exp(-sum_j p_j log p_j)`` with ``p_j`` the share of assignments to code ``j`` (1 when one
    code takes everything, ``codebook_size`` when all are used equally)."""
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).double().mean()), float(math.exp(float(entropy)))
