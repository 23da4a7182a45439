"""Zero-Shot Noise2Noise (Mansour and Heckel, CVPR 2023): the pair downsampler and the ZS-N2N loss.

The objective trains any denoiser ``f`` (``forward``: float[B, 1, H, W] -> the denoised image, in the units of
``encoder.normalise``); its default encoder is the small network of :mod:`models.zsn2n`. Batches carry
``"image"`` float[B, 1, H, W] in HU and, for simulated low dose, ``"clean"``; :meth:`ZSN2N.monitor` reports the
held-out loss and, when ``"clean"`` is there, the PSNR of the denoised images in a HU window.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.config import ConfigError
from pretrain.objectives.base import Objective

__all__ = ["ZSN2N", "denoiser_input", "even_crop", "pair_downsample", "windowed_psnr", "zs_n2n_loss"]


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ZS-N2N pair downsampler: stride-2 convolutions with [[0, .5], [.5, 0]] and [[.5, 0], [0, .5]].

    Each output pixel averages one diagonal of a 2 x 2 block, so the two half-size images see disjoint pixels
    and, for pixel-independent noise, independent noise. Shapes: float[B, C, H, W] -> 2 x float[B, C, H/2, W/2].

    >>> a, b = pair_downsample(torch.arange(4.0).reshape(1, 1, 2, 2))
    >>> a.item(), b.item()
    (1.5, 1.5)
    """
    c = x.shape[1]
    k = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]], [[[0.5, 0.0], [0.0, 0.5]]]], dtype=x.dtype, device=x.device)
    out = F.conv2d(x, k.repeat(c, 1, 1, 1), stride=2, groups=c)
    return out[:, 0::2], out[:, 1::2]


def even_crop(x: torch.Tensor) -> torch.Tensor:
    """Drop the last row / column of an odd-sized image, so that 2 x 2 blocks tile it."""
    h, w = x.shape[-2:]
    return x[..., : h - h % 2, : w - w % 2]


def zs_n2n_loss(f: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """L = 1/2 [|D1 - f(D2)|^2 + |D2 - f(D1)|^2] + 1/2 [|f(D1) - D1(f(y))|^2 + |f(D2) - D2(f(y))|^2]

    with D1, D2 the pair downsampler, ``f`` the denoiser (``x - n(x)`` in the paper's notation) and mean squared
    errors. Shapes: ``y`` float[B, 1, H, W] (H, W even) -> scalar.
    """
    d1, d2 = pair_downsample(y)
    f1, f2 = f(d1), f(d2)
    r1, r2 = pair_downsample(f(y))
    residual = 0.5 * (F.mse_loss(d1, f2) + F.mse_loss(d2, f1))
    consistency = 0.5 * (F.mse_loss(f1, r1) + F.mse_loss(f2, r2))
    return residual + consistency


def denoiser_input(encoder: nn.Module, batch: dict[str, Any], unique: bool = True) -> torch.Tensor:
    """The batch's images in the denoiser's units, float[B', 1, H, W] with H, W even.

    ``unique``: keep one copy of images whose ``meta["id"]`` repeats. The loop's smallest batch is 2, so a
    zero-shot run on one slice draws it twice per step; filtering it twice would only double the cost.
    """
    image = batch["image"]
    ids = (batch.get("meta") or {}).get("id") if isinstance(batch.get("meta"), dict) else None
    if unique and ids is not None and len(set(ids)) < len(ids):
        first = sorted({i: n for n, i in reversed(list(enumerate(ids)))}.values())
        image = image[first]
    norm = getattr(encoder, "normalise", None)
    return even_crop(norm(image) if norm is not None else image)


@torch.no_grad()
def windowed_psnr(a: torch.Tensor, b: torch.Tensor, window: tuple[float, float]) -> float:
    """Mean over images of PSNR (dB) between ``a`` and ``b`` float[B, 1, H, W] in HU, both clipped to ``window``,
    with data range ``window[1] - window[0]``."""
    lo, hi = float(window[0]), float(window[1])
    mse = (a.clamp(lo, hi) - b.clamp(lo, hi)).double().square().flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10((hi - lo) ** 2 / mse)).mean())


class ZSN2N(Objective):
    """ZS-N2N on single CT slices or on batches of slices / patches.

    Args:
        window: HU window (low, high) of the PSNR monitor (default: soft tissue, W 400 L 40).
        unique: filter an image once per step when the batch repeats it (zero-shot runs).
    """

    name: ClassVar[str] = "zs_n2n"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, encoder: nn.Module, window: tuple[float, float] | list[float] = (-160.0, 240.0),
                 unique: bool = True) -> None:
        super().__init__(encoder)
        if len(window) != 2 or not window[0] < window[1]:
            raise ConfigError(f"objective.window: need [low, high] HU with low < high, got {list(window)}")
        self.window = (float(window[0]), float(window[1]))
        self.unique = bool(unique)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        y = denoiser_input(self.encoder, batch, self.unique)
        return {"loss": zs_n2n_loss(self.encoder, y)}

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """Held-out loss and, when the batch has ``"clean"``, PSNR (dB) of the noisy and denoised images."""
        return denoising_monitor(self, batch)


@torch.no_grad()
def denoising_monitor(objective: Objective, batch: dict[str, Any]) -> dict[str, float]:
    """``heldout_loss`` of ``objective`` on ``batch`` and, when the batch has ``"clean"``, ``psnr_noisy`` and
    ``psnr_denoised`` in ``objective.window`` (HU), the denoiser running through its ``denoise`` (HU -> HU)."""
    out = {"heldout_loss": float(objective(dict(batch, meta={}))["loss"])}
    if "clean" in batch:
        noisy, clean = batch["image"].float(), batch["clean"].float()
        denoised = objective.encoder.denoise(noisy)
        out["psnr_noisy"] = windowed_psnr(noisy, clean, objective.window)
        out["psnr_denoised"] = windowed_psnr(denoised, clean, objective.window)
    return out
