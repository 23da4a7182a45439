"""Zero-Shot Noise2Noise (Mansour and Heckel, CVPR 2023): the pair downsampler and the ZS-N2N loss.

The objective trains any denoiser ``f`` (``forward``: float[B, 1, H, W] -> the denoised image, in the units of
``encoder.normalise``); its default encoder is the small network of :mod:`models.zsn2n`. Batches carry
``"image"`` float[B, 1, H, W] in the data's units (HU, or [0, 1] for min-max normalised CT) and, for simulated low
dose, ``"clean"``; :meth:`ZSN2N.monitor` reports the held-out loss and, when ``"clean"`` is there, the PSNR of the
denoised images in a window.

Units (:func:`bind_units`): the loop hands the objective its training dataset; when that dataset says how a HU value
reads in its units (``dataset.hu_to_data``, :class:`modalities.ct.dataset.CTSlices`), the encoder's ``hu_range``
(unless given in ``model.hu_range``, then in the data's units) and the monitor's window (unless given) are mapped
from their HU defaults into the data's units, and the encoder's config records the range it used.

Never worse than the input (:meth:`ZSN2N.check_against_identity`, at the last step): the ZS-N2N loss of the identity
``f(x) = x`` is ``|D1 y - D2 y|^2`` (its consistency term is 0). Each step logs it as ``identity_loss``; if after
training the network's loss on the last batch is not below the identity's, the network is no better than its noisy
input on its own criterion: the run says so in one line and the exported ZS-N2N network falls back to the identity
(its noise head zeroed), so that its output is the input.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.zsn2n import ZSN2NNet
from pretrain.config import ConfigError
from pretrain.metrics import windowed_psnr
from pretrain.objectives.base import Objective

__all__ = ["SOFT_TISSUE_HU", "ZSN2N", "bind_units", "denoiser_input", "even_crop", "identity_loss",
           "pair_downsample", "zs_n2n_loss"]

SOFT_TISSUE_HU = (-160.0, 240.0)  # W 400 L 40: the default window of the PSNR monitors


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


@torch.no_grad()
def identity_loss(y: torch.Tensor) -> torch.Tensor:
    """:func:`zs_n2n_loss` of the identity ``f(x) = x``: ``mean |D1 y - D2 y|^2`` (the consistency term is 0)."""
    d1, d2 = pair_downsample(y)
    return F.mse_loss(d1, d2)


def _check_window(window: Any) -> tuple[float, float] | None:
    if window is None:
        return None
    if len(window) != 2 or not window[0] < window[1]:
        raise ConfigError(f"objective.window: need [low, high] with low < high, got {list(window)}")
    return (float(window[0]), float(window[1]))


def _units_source(dataset: Any) -> Any:
    """The dataset (or the dataset wrapped by a Subset-like wrapper) that has ``hu_to_data``, or None."""
    for _ in range(4):
        if dataset is None or callable(getattr(dataset, "hu_to_data", None)):
            return dataset
        dataset = getattr(dataset, "dataset", None)
    return None


def bind_units(objective: Objective, dataset: Any) -> None:
    """Make the encoder's internal scale and the monitor's window follow the units of ``dataset`` (see the module
    docstring). Datasets without ``hu_to_data`` (HU only) leave everything as it is. Prints one line when a range
    is mapped away from HU."""
    ds = _units_source(dataset)
    if ds is None:
        return
    units = str(getattr(ds, "units", "hu"))
    to_data = ds.hu_to_data
    if getattr(objective, "window_auto", False):
        objective.window = (to_data(SOFT_TISSUE_HU[0]), to_data(SOFT_TISSUE_HU[1]))
    enc = objective.encoder
    if not (hasattr(enc, "hu_low") and hasattr(enc, "hu_width")):
        return
    config = getattr(enc, "config", None)
    if isinstance(config, dict) and config.get("hu_range") is not None:
        return  # given by hand (model.hu_range), in the data's units
    hu = (float(enc.hu_low), float(enc.hu_low + enc.hu_width))
    mapped = [to_data(hu[0]), to_data(hu[1])]
    if callable(getattr(enc, "set_hu_range", None)):
        enc.set_hu_range(mapped)
    else:
        enc.hu_low, enc.hu_width = mapped[0], mapped[1] - mapped[0]
        if isinstance(config, dict):
            config["hu_range"] = list(mapped)
    if units != "hu":
        w = objective.window
        print(f"{objective.name}: data.units={units} -> model.hu_range=[{mapped[0]:.4g}, {mapped[1]:.4g}] "
              f"(the default [{hu[0]:g}, {hu[1]:g}] HU mapped), monitor window [{w[0]:.4g}, {w[1]:.4g}] "
              f"(set model.hu_range to override)", flush=True)


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


class ZSN2N(Objective):
    """ZS-N2N on single CT slices or on batches of slices / patches.

    Args:
        window: window (low, high) of the PSNR monitor in the data's units, or None: soft tissue (W 400 L 40 HU),
            mapped into the data's units by :func:`bind_units`.
        unique: filter an image once per step when the batch repeats it (zero-shot runs).
        fallback: at the last step, fall back to the identity when the network does not beat it on the ZS-N2N
            loss (:meth:`check_against_identity`).
    """

    name: ClassVar[str] = "zs_n2n"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("image",)
    dedups_repeated_images: ClassVar[bool] = True  # one image trains alone (per-image zero-shot mode)

    def __init__(self, encoder: nn.Module, window: tuple[float, float] | list[float] | None = None,
                 unique: bool = True, fallback: bool = True) -> None:
        super().__init__(encoder)
        given = _check_window(window)
        self.window_auto = given is None
        self.window = given or SOFT_TISSUE_HU
        self.unique = bool(unique)
        self.fallback = bool(fallback)
        self.fell_back = False
        self._last: torch.Tensor | None = None

    def bind_dataset(self, dataset: Any) -> None:
        bind_units(self, dataset)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        y = denoiser_input(self.encoder, batch, self.unique)
        if self.training and torch.is_grad_enabled():  # a training step, not the monitor
            self._last = y.detach()
        return {"loss": zs_n2n_loss(self.encoder, y), "identity_loss": identity_loss(y)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        if self.fallback and step >= total_steps and self._last is not None:
            self.check_against_identity(self._last)

    @torch.no_grad()
    def check_against_identity(self, y: torch.Tensor) -> dict[str, float]:
        """ZS-N2N loss of the network and of the identity on ``y`` (float[B, 1, H, W], the denoiser's units; summed
        over processes when distributed); when the network's is not lower, print one line and make a
        :class:`models.zsn2n.ZSN2NNet` the identity. Returns both losses and ``fell_back``."""
        trained, ident = zs_n2n_loss(self.encoder, y).double(), identity_loss(y).double()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.stack([trained, ident])
            torch.distributed.all_reduce(both)
            trained, ident = both[0], both[1]
        out = {"loss": float(trained), "identity_loss": float(ident), "fell_back": 0.0}
        if float(trained) < float(ident):
            return out
        enc = self.encoder
        if isinstance(enc, ZSN2NNet) and isinstance(enc.net[-1], nn.Conv2d):
            enc.net[-1].weight.zero_()
            enc.net[-1].bias.zero_()
            self.fell_back = True
            out["fell_back"] = 1.0
            what = "falling back to the identity: the exported network returns its input unchanged"
        else:
            what = f"the {type(enc).__name__} encoder has no identity fallback: its output may be worse than its input"
        print(f"zs_n2n: after training the network's loss {float(trained):.4g} is not below the noisy input's own "
              f"{float(ident):.4g} (identity) on its self-supervised criterion; {what}", flush=True)
        return out

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """Held-out loss and, when the batch has ``"clean"``, PSNR (dB) of the noisy and denoised images."""
        return denoising_monitor(self, batch)


@torch.no_grad()
def denoising_monitor(objective: Objective, batch: dict[str, Any]) -> dict[str, float]:
    """``heldout_loss`` of ``objective`` on ``batch`` and, when the batch has ``"clean"``, ``psnr_noisy`` and
    ``psnr_denoised`` in ``objective.window`` (data units), the denoiser running through its ``denoise``."""
    out = {"heldout_loss": float(objective(dict(batch, meta={}))["loss"])}
    if "clean" in batch:
        noisy, clean = batch["image"].float(), batch["clean"].float()
        denoised = objective.encoder.denoise(noisy)
        out["psnr_noisy"] = windowed_psnr(noisy, clean, objective.window)
        out["psnr_denoised"] = windowed_psnr(denoised, clean, objective.window)
    return out
