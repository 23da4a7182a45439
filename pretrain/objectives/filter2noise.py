"""Filter2Noise (Sun et al., arXiv:2504.13519, 2025): self-supervised training of an interpretable denoiser.

With ``y`` the noisy image, D1 / D2 the ZS-N2N pair downsampler (:func:`~pretrain.objectives.zs_n2n.pair_downsample`),
S the Euclidean local shuffle (:func:`local_shuffle`) and ``f`` the denoiser (an attention-guided bilateral filter,
:mod:`models.bilateral`):

    L = 1/3 L1(f(S(D1 y)), f(S(D2 y)))
      + 1/3 [L1(f(S(D1 y)), D1 f(y)) + L1(f(S(D2 y)), D2 f(y))]
      + 1/3 L1(D1 f(y), D2 f(y))
      + lambda L1(|DoG * y|, |DoG * f(y)|)

The last term keeps the edges of ``y`` (difference of Gaussians, 7 x 7, sigmas 9 and 10, lambda ~ 350 for images
in [0, 1] units). Per-image (zero-shot) training runs ~500 AdamW steps at lr 1e-3 on one slice; dataset training
fits one filter to the slices or patches of a whole scanner / protocol (recipe: modalities/ct/recipe.yaml).

Units: the filter works on its internal [0, 1] scale (``encoder.normalise``). The training dataset's units (HU or
a min-max normalised [0, 1]) set the filter's ``hu_range`` and the monitor's window unless they were given
(:func:`pretrain.objectives.zs_n2n.bind_units`): on [0, 1] data the filter sees the data as it is rather than
1/4096 of its range, where its ~120 HU range sigma would dwarf the whole image.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.config import ConfigError
from pretrain.objectives.base import Objective
from pretrain.objectives.zs_n2n import SOFT_TISSUE_HU, _check_window, bind_units, denoiser_input, denoising_monitor, \
    pair_downsample

__all__ = ["Filter2Noise", "dog_kernel", "filter2noise_loss", "local_shuffle"]

# the 6 pairs of a 2 x 2 block (pixels 0 1 / 2 3) and the permutation that swaps each
_PAIRS = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
_SWAPS = torch.tensor([[1, 0, 2, 3], [2, 1, 0, 3], [3, 1, 2, 0], [0, 2, 1, 3], [0, 3, 2, 1], [0, 1, 3, 2]])


def local_shuffle(x: torch.Tensor) -> torch.Tensor:
    """Euclidean local shuffle: in every 2 x 2 block swap the two pixels closest in value (first pair on ties).

    It breaks the spatial correlation of CT noise that the downsampler alone keeps, while moving no pixel more
    than one step. An odd last row / column is left as is. Shapes: float[B, 1, H, W] -> the same.

    >>> local_shuffle(torch.tensor([[[[0.0, 5.0], [1.0, 9.0]]]])).flatten().tolist()
    [1.0, 5.0, 0.0, 9.0]
    """
    b, c, h, w = x.shape
    he, we = h - h % 2, w - w % 2
    blocks = x[..., :he, :we].reshape(b, c, he // 2, 2, we // 2, 2).permute(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(b, c, he // 2, we // 2, 4)
    pairs = _PAIRS.to(x.device)
    dist = (blocks[..., pairs[:, 0]] - blocks[..., pairs[:, 1]]).square().sum(1, keepdim=True)
    perm = _SWAPS.to(x.device)[dist.argmin(-1)].expand(b, c, he // 2, we // 2, 4)
    out = torch.gather(blocks, -1, perm).reshape(b, c, he // 2, we // 2, 2, 2).permute(0, 1, 2, 4, 3, 5)
    out = out.reshape(b, c, he, we)
    if (he, we) == (h, w):
        return out
    result = x.clone()
    result[..., :he, :we] = out
    return result


def dog_kernel(size: int = 7, sigma_narrow: float = 9.0, sigma_wide: float = 10.0) -> torch.Tensor:
    """Difference of two normalised Gaussians on a ``size`` x ``size`` grid, float[1, 1, size, size]."""
    t = torch.arange(size, dtype=torch.float32) - size // 2
    r2 = t[:, None] ** 2 + t[None, :] ** 2
    g1, g2 = torch.exp(-r2 / (2 * sigma_narrow**2)), torch.exp(-r2 / (2 * sigma_wide**2))
    return (g1 / g1.sum() - g2 / g2.sum())[None, None]


def filter2noise_loss(f: nn.Module, y: torch.Tensor, dog: torch.Tensor, edge_weight: float) -> dict[str, torch.Tensor]:
    """The four Filter2Noise terms (module docstring) and their sum ``loss``; ``y`` float[B, 1, H, W], H, W even."""
    d1, d2 = pair_downsample(y)
    f1, f2 = f(local_shuffle(d1)), f(local_shuffle(d2))
    fy = f(y)
    r1, r2 = pair_downsample(fy)
    resolution = F.l1_loss(f1, f2) / 3
    cross = (F.l1_loss(f1, r1) + F.l1_loss(f2, r2)) / 3
    consistency = F.l1_loss(r1, r2) / 3
    pad = dog.shape[-1] // 2
    dog = dog.to(y)
    edge = edge_weight * F.l1_loss(F.conv2d(fy, dog, padding=pad).abs(), F.conv2d(y, dog, padding=pad).abs())
    return {"loss": resolution + cross + consistency + edge, "resolution": resolution.detach(),
            "cross_scale": cross.detach(), "consistency": consistency.detach(), "edge": edge.detach()}


class Filter2Noise(Objective):
    """Filter2Noise on single CT slices (zero-shot) or on batches of slices / patches (one filter per protocol).

    Args:
        edge_weight: lambda of the DoG edge term (paper code: 350-400).
        dog_size, dog_sigmas: the DoG kernel (paper code: 7, (9, 10)).
        window: window (low, high) of the PSNR monitor in the data's units, or None: soft tissue (W 400 L 40 HU),
            mapped into the data's units when the loop binds the dataset.
        unique: filter an image once per step when the batch repeats it (zero-shot runs).
    """

    name: ClassVar[str] = "filter2noise"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("image",)
    dedups_repeated_images: ClassVar[bool] = True  # one image trains alone (per-image zero-shot mode)

    def __init__(self, encoder: nn.Module, edge_weight: float = 350.0, dog_size: int = 7,
                 dog_sigmas: tuple[float, float] | list[float] = (9.0, 10.0),
                 window: tuple[float, float] | list[float] | None = None, unique: bool = True) -> None:
        super().__init__(encoder)
        if not edge_weight >= 0:
            raise ConfigError(f"objective.edge_weight: must be >= 0, got {edge_weight}")
        if dog_size < 1 or dog_size % 2 == 0:
            raise ConfigError(f"objective.dog_size: must be odd and >= 1, got {dog_size}")
        given = _check_window(window)
        self.edge_weight = float(edge_weight)
        self.window_auto = given is None
        self.window = given or SOFT_TISSUE_HU
        self.unique = bool(unique)
        self.register_buffer("dog", dog_kernel(dog_size, *map(float, dog_sigmas)), persistent=False)

    def bind_dataset(self, dataset: Any) -> None:
        bind_units(self, dataset)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        y = denoiser_input(self.encoder, batch, self.unique)
        return filter2noise_loss(self.encoder, y, self.dog, self.edge_weight)

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """Held-out loss and, when the batch has ``"clean"``, PSNR (dB) of the noisy and denoised images."""
        return denoising_monitor(self, batch)
