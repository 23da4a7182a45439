"""Attention-guided bilateral filter (AGBF), the interpretable denoiser of Filter2Noise.

Sun et al., "Filter2Noise: Interpretable and Zero-Shot Low-Dose CT Image Denoising", arXiv:2504.13519 (2025).

One stage filters an image ``x`` float[B, 1, H, W] with a bilateral filter whose three widths are predicted per
P x P patch by attention over the patch tokens:

    y(p) = sum_q w(p, q) x(q) / sum_q w(p, q)
    w(p, q) = exp(-(q_x - p_x)^2 / (2 sigma_x(p)^2) - (q_y - p_y)^2 / (2 sigma_y(p)^2)
                  - (x(q) - x(p))^2 / (2 sigma_r(p)^2))

over the (2 R + 1)^2 window with R = ceil(max(sigma_x, sigma_y)) of the whole image; the border is reflected.
The sigmas come from two single-head attention layers over tokens = flattened patches (width 8), a LayerNorm, a
linear map to 3 values and a bounded softplus ``min(softplus(z), sigma_max) + eps``, and are constant over each
patch (nearest upsampling). A stage has ~1.8k parameters; :class:`BilateralDenoiser` stacks ``stages`` of them.

The filter itself is :class:`BilateralFilterFunction`: a hand-written forward and backward that loop over the
window offsets with in-place operations on [B, 1, H, W] buffers and recompute the weights in the backward pass,
so that memory stays O(H W) instead of the O(R^2 H W) of an unfolded window, which is what makes a training step
on a 512 x 512 slice fast on a CPU (benchmarks/ct_denoising.py).

Units: :meth:`BilateralDenoiser.denoise` takes and returns the data's units (Hounsfield units by default); inside,
images are mapped to ``(x - hu_range[0]) / (hu_range[1] - hu_range[0])`` (about [0, 1] for the 12-bit CT range), so
sigma_r is in those units; :meth:`BilateralDenoiser.explain` reports sigma_r back in the data's units. Data in other
units (a min-max normalised [0, 1] image) needs ``hu_range`` in those units (``[0, 1]``): with the HU default the
whole image would span 1/4096 of the internal scale and sigma_r (~0.03, i.e. ~120 HU) would dwarf it, turning the
filter into a fixed Gaussian blur. The training objectives set it from the dataset's units
(:meth:`BilateralDenoiser.set_hu_range`) unless it was given.

Interpretability knob: ``denoise(x, sigma_r_scale=m)`` multiplies every stage's sigma_r by the map ``m``
float[H, W] (1 = as trained): values > 1 in a region smooth it more (the range kernel admits larger intensity
differences), values < 1 keep more of its texture. Pixels further than the filters' reach from the region change
only through the second stage's sigmas (its attention sees the whole first-stage output), by a negligible amount.

>>> model = BilateralDenoiser(stages=2)
>>> model.denoise(torch.full((1, 40, 40), 40.0)).shape
torch.Size([1, 40, 40])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionGuidedBilateral", "BilateralDenoiser", "BilateralFilterFunction", "bilateral_filter"]


class BilateralFilterFunction(torch.autograd.Function):
    """Bilateral filter with per-pixel widths, forward and backward by loops over window offsets.

    Inputs: ``xp`` float[B, 1, H + 2R, W + 2R] (the image padded by R), ``na``, ``nb``, ``nc`` float[B, 1, H, W]
    holding -1 / (2 sigma_x^2), -1 / (2 sigma_y^2), -1 / (2 sigma_r^2), and the radius R. With
    ``log w_k = na dx_k^2 + nb dy_k^2 + nc (v_k - x)^2`` (v_k the neighbour at offset k), ``y = sum w v / sum w``.
    Gradients, with g the upstream gradient, W = sum_k w_k and r_k = g w_k (v_k - y) / W:

        dL/dna = sum_k r_k dx_k^2        dL/dnb = sum_k r_k dy_k^2        dL/dnc = sum_k r_k (v_k - x)^2
        dL/dv_k = g w_k / W + 2 nc r_k (v_k - x)                         dL/dx (centre) = -2 nc sum_k r_k (v_k - x)

    and dL/dv_k is added to the padded image's gradient at the neighbour's position.
    """

    @staticmethod
    def forward(ctx: Any, xp: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, nc: torch.Tensor,
                radius: int) -> torch.Tensor:
        r = int(radius)
        h, w = na.shape[-2:]
        x = xp[..., r:r + h, r:r + w]
        num = torch.zeros_like(na)
        den = torch.zeros_like(na)
        d, e = torch.empty_like(na), torch.empty_like(na)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                v = xp[..., r + dy:r + dy + h, r + dx:r + dx + w]
                _log_weight(v, x, na, nb, nc, dx, dy, d, e)
                e.exp_()
                den.add_(e)
                num.addcmul_(e, v)
        out = num.div_(den)
        ctx.radius = r
        ctx.save_for_backward(xp, na, nb, nc, out, den)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xp, na, nb, nc, out, den = ctx.saved_tensors
        r = ctx.radius
        h, w = na.shape[-2:]
        need_x, need_a, need_b, need_c = ctx.needs_input_grad[:4]
        x = xp[..., r:r + h, r:r + w]
        gq = g.contiguous() / den
        gxp = torch.zeros_like(xp) if need_x else None
        gna = torch.zeros_like(na) if need_a else None
        gnb = torch.zeros_like(nb) if need_b else None
        gnc = torch.zeros_like(nc) if need_c else None
        centre = torch.zeros_like(na) if need_x else None
        d, d2, e, t = (torch.empty_like(na) for _ in range(4))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                v = xp[..., r + dy:r + dy + h, r + dx:r + dx + w]
                _log_weight(v, x, na, nb, nc, dx, dy, d, e, d2)
                e.exp_()
                torch.sub(v, out, out=t)
                t.mul_(e).mul_(gq)  # r_k = g w_k (v_k - y) / W
                if gna is not None and dx:
                    gna.add_(t, alpha=float(dx * dx))
                if gnb is not None and dy:
                    gnb.add_(t, alpha=float(dy * dy))
                if gnc is not None:
                    gnc.addcmul_(t, d2)
                if gxp is not None:
                    t.mul_(d).mul_(nc)  # nc r_k (v_k - x)
                    centre.add_(t)
                    gv = gxp[..., r + dy:r + dy + h, r + dx:r + dx + w]
                    gv.addcmul_(gq, e)
                    gv.add_(t, alpha=2.0)
        if gxp is not None:
            gxp[..., r:r + h, r:r + w].sub_(centre, alpha=2.0)
        return gxp, gna, gnb, gnc, None


def _log_weight(v: torch.Tensor, x: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, nc: torch.Tensor, dx: int,
                dy: int, d: torch.Tensor, e: torch.Tensor, d2: torch.Tensor | None = None) -> None:
    """``d = v - x`` and ``e = nc d^2 + na dx^2 + nb dy^2`` written into the given buffers (``d2 = d^2`` if given):
    in-place into preallocated buffers because allocating a fresh 1 MB tensor per offset costs more than the
    arithmetic."""
    torch.sub(v, x, out=d)
    if d2 is not None:
        torch.mul(d, d, out=d2)
        torch.mul(d2, nc, out=e)
    else:
        torch.mul(d, d, out=e)
        e.mul_(nc)
    if dx:
        e.add_(na, alpha=float(dx * dx))
    if dy:
        e.add_(nb, alpha=float(dy * dy))


def bilateral_filter(x: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, sigma_r: torch.Tensor,
                     radius: int | None = None) -> torch.Tensor:
    """Bilateral filter of ``x`` float[B, 1, H, W] with per-pixel widths float[B, 1, H, W] (pixels, pixels, image
    units), window radius ``ceil(max(sigma_x, sigma_y))`` unless given, border reflected (replicated when the image
    is smaller than the radius)."""
    if radius is None:
        radius = int(math.ceil(float(torch.maximum(sigma_x.detach().max(), sigma_y.detach().max()))))
    radius = max(1, radius)
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    xp = F.pad(x, (radius,) * 4, mode=mode)
    na, nb, nc = (-0.5 / s.float().square() for s in (sigma_x, sigma_y, sigma_r))
    return BilateralFilterFunction.apply(xp.float().contiguous(), na.contiguous(), nb.contiguous(),
                                         nc.contiguous(), radius)


class ChunkedAttentionFunction(torch.autograd.Function):
    """softmax(q k^T / sqrt(D)) v for float[B, N, D], computed ``chunk`` query rows at a time.

    Forward keeps only the output and the row log-sum-exp ``L``; backward recomputes ``P = exp(q k^T / sqrt(D) - L)``
    per chunk (``dS = P * (dO v^T - rowsum(dO * O))``, ``dq = dS k / sqrt(D)``, ``dk = dS^T q / sqrt(D)``,
    ``dv = P^T dO``). With D = 8 and N = 4096 patch tokens the N x N score matrix is memory-bound: chunks of
    128 rows stay in cache, which makes this ~3x faster on a CPU than the unfused softmax attention.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
        b, n, d = q.shape
        qs = q * d**-0.5
        out = torch.empty_like(v)
        lse = torch.empty(b, n, 1, dtype=q.dtype, device=q.device)
        for i in range(b):
            kt, vt = k[i].t().contiguous(), v[i].t().contiguous()
            for j in range(0, n, chunk):
                s = qs[i, j:j + chunk] @ kt
                m = s.amax(1, keepdim=True)
                s.sub_(m).exp_()
                total = s.sum(1, keepdim=True)
                # (v^T s^T)^T rather than s v: a GEMM with 8 output rows is several times faster than 8 columns
                out[i, j:j + chunk] = (vt @ s.t()).t() / total
                lse[i, j:j + chunk] = m + total.log()
        ctx.chunk = chunk
        ctx.save_for_backward(qs, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qs, k, v, out, lse = ctx.saved_tensors
        chunk = ctx.chunk
        b, n, d = qs.shape
        grad = grad.contiguous()
        delta = (grad * out).sum(-1, keepdim=True)
        dq = torch.empty_like(qs)
        dkt = torch.zeros(b, d, n, dtype=k.dtype, device=k.device)
        dvt = torch.zeros(b, d, n, dtype=v.dtype, device=v.device)
        for i in range(b):
            kt, vt = k[i].t().contiguous(), v[i].t().contiguous()
            for j in range(0, n, chunk):
                g = grad[i, j:j + chunk]
                p = qs[i, j:j + chunk] @ kt
                p.sub_(lse[i, j:j + chunk]).exp_()
                dvt[i].addmm_(g.t(), p)
                ds = g @ vt
                ds.sub_(delta[i, j:j + chunk]).mul_(p)
                dq[i, j:j + chunk] = (kt @ ds.t()).t()
                dkt[i].addmm_(qs[i, j:j + chunk].t(), ds)
        return dq.mul_(d**-0.5), dkt.transpose(1, 2), dvt.transpose(1, 2), None


class _Attention(nn.Module):
    """Single-head scaled dot-product attention of width ``dim`` over tokens float[B, N, in_dim]."""

    def __init__(self, in_dim: int, dim: int, chunk: int = 128) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(in_dim, dim), nn.Linear(in_dim, dim), nn.Linear(in_dim, dim)
        self.chunk = chunk

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(tokens), self.k(tokens), self.v(tokens)
        if tokens.device.type != "cpu":  # fused flash / memory-efficient kernels exist there
            return F.scaled_dot_product_attention(q, k, v)
        return ChunkedAttentionFunction.apply(q.float().contiguous(), k.float().contiguous(),
                                              v.float().contiguous(), self.chunk)


class AttentionGuidedBilateral(nn.Module):
    """One AGBF stage: patch tokens -> attention -> attention -> LayerNorm -> 3 bounded-softplus sigmas -> filter.

    Args:
        patch_size: P; sigmas are constant over P x P patches; H and W must be multiples of P.
        hidden: attention width (paper: 8).
        sigma_max: upper bound of the softplus (paper: 6), which caps the window at 13 x 13.

    Shapes: ``x`` float[B, 1, H, W] -> (float[B, 1, H, W], sigmas float[B, 3, H / P, W / P]).
    """

    def __init__(self, patch_size: int = 8, hidden: int = 8, sigma_max: float = 6.0, eps: float = 1e-6,
                 sigma_init: tuple[float, float, float] | None = None) -> None:
        super().__init__()
        self.patch_size, self.sigma_max, self.eps = patch_size, float(sigma_max), float(eps)
        self.features = _Attention(patch_size * patch_size, hidden)
        self.sigma_attention = _Attention(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 3)
        if sigma_init is not None:
            # start near the given widths everywhere: softplus^-1 in the bias, small weights
            with torch.no_grad():
                target = torch.tensor([float(v) for v in sigma_init]).clamp(1e-4, self.sigma_max - 1e-3)
                self.proj.bias.copy_(target + torch.log(-torch.expm1(-target)))
                self.proj.weight.mul_(0.1)

    def sigmas(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, 3, H / P, W / P]: sigma_x, sigma_y (pixels) and sigma_r (image units) per patch."""
        b, _, h, w = x.shape
        p = self.patch_size
        tokens = x.reshape(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(b, (h // p) * (w // p), p * p)
        z = self.proj(self.norm(self.sigma_attention(self.features(tokens))))
        s = torch.clamp(F.softplus(z), max=self.sigma_max) + self.eps
        return s.transpose(1, 2).reshape(b, 3, h // p, w // p)

    def forward(self, x: torch.Tensor, sigma_r_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.sigmas(x)
        b, _, hp, wp = s.shape
        p = self.patch_size
        full = s[:, :, :, None, :, None].expand(b, 3, hp, p, wp, p).reshape(b, 3, hp * p, wp * p)
        sx, sy, sr = full[:, 0:1], full[:, 1:2], full[:, 2:3]
        if sigma_r_scale is not None:
            sr = sr * sigma_r_scale
        return bilateral_filter(x, sx, sy, sr), s


class BilateralDenoiser(nn.Module):
    """``stages`` attention-guided bilateral filters in sequence; the output is the filtered image (no residual).

    Args:
        stages: number of AGBF stages (paper: 2).
        patch_size: P of the sigma predictor (paper: 8). Inputs of any size are padded (edge-replicated) to a
            multiple of P and cropped back.
        hidden: attention width (paper: 8).
        sigma_max: bound of the bounded softplus (paper: 6).
        hu_range: the interval of input values mapped to [0, 1] inside (HU: the 12-bit CT range by default; for
            data in [0, 1] give [0, 1]).
        sigma_init: initial (sigma_x, sigma_y, sigma_r) of every patch (pixels, pixels, normalised units), or None
            for the paper's plain initialisation (softplus of a random projection, ~0.7 each). The default
            (1, 1, 0.03), i.e. a 3 x 3 window and a range width of ~120 HU (the noise level of low-dose CT), lets a
            few hundred steps go into adapting the filter rather than into shrinking sigma_r from ~2900 HU.

    ``forward`` works in normalised units on float[B, 1, H, W]; :meth:`denoise` and :meth:`explain` in the data's
    units (HU unless ``hu_range`` says otherwise).
    """

    def __init__(self, stages: int = 2, patch_size: int = 8, hidden: int = 8, sigma_max: float = 6.0,
                 hu_range: tuple[float, float] | list[float] = (-1024.0, 3072.0),
                 sigma_init: tuple[float, float, float] | list[float] | None = (1.0, 1.0, 0.03)) -> None:
        super().__init__()
        if stages < 1 or patch_size < 1:
            raise ValueError(f"stages and patch_size must be >= 1, got {stages}, {patch_size}")
        self.patch_size = int(patch_size)
        self.hu_low, self.hu_width = float(hu_range[0]), float(hu_range[1]) - float(hu_range[0])
        if self.hu_width <= 0:
            raise ValueError(f"hu_range must be increasing, got {list(hu_range)}")
        init = tuple(sigma_init) if sigma_init is not None else None
        self.stages = nn.ModuleList(AttentionGuidedBilateral(patch_size, hidden, sigma_max, sigma_init=init)
                                    for _ in range(stages))

    @property
    def hu_range(self) -> tuple[float, float]:
        return (self.hu_low, self.hu_low + self.hu_width)

    def set_hu_range(self, hu_range: tuple[float, float] | list[float]) -> None:
        """Map ``hu_range`` (in the data's units) to the internal [0, 1] from now on, and record it in ``config``
        (what :func:`models.save_pretrained` writes) when the model has one. No weight changes: the learned
        sigma_r stays in internal units."""
        lo, hi = float(hu_range[0]), float(hu_range[1])
        if not hi > lo:
            raise ValueError(f"hu_range must be increasing, got {[lo, hi]}")
        self.hu_low, self.hu_width = lo, hi - lo
        if isinstance(getattr(self, "config", None), dict):
            self.config["hu_range"] = [lo, hi]

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        h, w = x.shape[-2:]
        p = self.patch_size
        ph, pw = (-h) % p, (-w) % p
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, h, w

    def filter_with_sigmas(self, x: torch.Tensor, sigma_r_scale: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(filtered float[B, 1, H, W], per-stage sigmas float[B, 3, H', W'] per patch) in normalised units."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a float[B, 1, H, W] image, got shape {tuple(x.shape)}")
        x, h, w = self._pad(x)
        if sigma_r_scale is not None:
            m = torch.as_tensor(sigma_r_scale, dtype=x.dtype, device=x.device)
            if m.ndim == 0:
                sigma_r_scale = m.reshape(1, 1, 1, 1)
            else:
                sigma_r_scale = self._pad(m.reshape(1, 1, *m.shape[-2:]))[0]
        sigmas = []
        for stage in self.stages:
            x, s = stage(x, sigma_r_scale)
            sigmas.append(s)
        return x[..., :h, :w], sigmas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.filter_with_sigmas(x)[0]

    def normalise(self, hu: torch.Tensor) -> torch.Tensor:
        return (hu - self.hu_low) / self.hu_width

    def to_hu(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.hu_width + self.hu_low

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma_r_scale: torch.Tensor | float | None = None) -> torch.Tensor:
        """Denoise ``x`` float[1, H, W] or float[B, 1, H, W] in the data's units (HU) -> the same shape and units.

        ``sigma_r_scale``: a float or a map float[H, W] multiplying sigma_r of every stage (the region knob).
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        batched = x.ndim == 4
        xb = x if batched else x.unsqueeze(0)
        out, _ = self.filter_with_sigmas(self.normalise(xb), sigma_r_scale)
        out = self.to_hu(out)
        return out if batched else out[0]

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-pixel sigma maps of ``x`` float[1, H, W] (data units, HU): ``stage{i}_sigma_x`` / ``_sigma_y`` (pixels)
        and ``stage{i}_sigma_r`` (data units), each float[H, W], for stages i = 1..S."""
        x = torch.as_tensor(x, dtype=torch.float32)
        xb, h, w = self._pad(self.normalise(x.reshape(1, 1, *x.shape[-2:])))
        maps: dict[str, torch.Tensor] = {}
        p = self.patch_size
        for i, stage in enumerate(self.stages, 1):
            xb, s = stage(xb)
            full = s[0].repeat_interleave(p, -2).repeat_interleave(p, -1)[:, :h, :w]
            maps[f"stage{i}_sigma_x"] = full[0]
            maps[f"stage{i}_sigma_y"] = full[1]
            maps[f"stage{i}_sigma_r"] = full[2] * self.hu_width
        return maps

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, 6 S] for ``x`` float[B, 1, H, W] in HU: mean and std over patches of the log sigmas of each
        stage (a compact description of how the filter treats an image; the denoiser has no other embedding)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        _, sigmas = self.filter_with_sigmas(self.normalise(x))
        logs = [s.log().flatten(2) for s in sigmas]
        return torch.cat([torch.cat([t.mean(-1), t.std(-1)], 1) for t in logs], 1)
