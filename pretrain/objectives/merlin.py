"""MERLIN (Dalsasso, Denis, Tupin, "As if by magic: self-supervised training of deep despeckling networks with
MERLIN", IEEE TGRS 2021): despeckling learned from single-look complex images alone.

For a Doppler-centred SLC ``z = a + i b`` of fully developed speckle over reflectivity ``R``, the real and
imaginary parts are independent given ``R`` and each is ``N(0, R / 2)``. The network sees one part, ``a``
(normalised log-amplitude ``x``, see :class:`models.unet2d.MerlinUNet`), and outputs ``y``, from which
``log R_hat = 2 (y (M - m) + m)``; it is trained to explain the *other* part by the Gaussian negative
log-likelihood (constants dropped)::

    L = mean_pixels [ 0.5 log R_hat + b^2 / (R_hat + eps) ]          (= -log N(b; 0, R_hat / 2) + const)

whose minimiser over ``R_hat`` is ``E[2 b^2 | a] = R``: since ``b`` is independent of ``a``, the network cannot
copy the speckle and must predict the reflectivity. Which part is the input alternates: each sample's seed picks
real -> imaginary or imaginary -> real, so half a batch goes each way.

Batches are ``{"image": float32[B, 2, H, W]}`` (real, imaginary; :class:`modalities.sar.patches.SLCPatches`);
``"clean"`` (float32[B, 1, H, W] expected amplitude, simulated data only) is read by :meth:`monitor` alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pretrain.config import ConfigError
from pretrain.metrics import psnr
from pretrain.objectives.base import Objective

__all__ = ["Merlin", "merlin_loss"]


def merlin_loss(log_r: Tensor, target: Tensor, eps: float, reduce: bool = True) -> Tensor:
    """``mean(0.5 log R + b^2 / (exp(log R) + eps))``: the Gaussian NLL of the other part ``b`` under
    ``N(0, R / 2)`` up to constants, computed in float32. Shapes: float[B, ...] (equal) -> a scalar, or float[B]
    (the mean per sample) when ``reduce`` is False."""
    log_r, target = log_r.float(), target.float()
    nll = 0.5 * log_r + target.square() / (torch.exp(log_r) + eps)
    return nll.mean() if reduce else nll.flatten(1).mean(dim=1)


class Merlin(Objective):
    """MERLIN: predict the imaginary part's variance from the real part (and vice versa) of a single-look complex
    image; the encoder is the despeckler (:class:`models.unet2d.MerlinUNet`).

    The sensor statistics (``m``, ``M``, ``eps``) of the normalisation are estimated from the training dataset in
    :meth:`bind_dataset` and stored in the encoder's config, so they travel with the exported model.

    >>> import models
    >>> obj = Merlin(models.create("merlin_unet", width=8, log_min=-2.0, log_max=6.0))
    >>> out = obj({"image": torch.randn(2, 2, 32, 32), "seed": torch.tensor([0, 1])})
    >>> sorted(out)
    ['loss', 'nll_imag_from_real', 'nll_real_from_imag']
    """

    name: ClassVar[str] = "merlin"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        if not hasattr(encoder, "normalise") or not hasattr(encoder, "log_reflectivity"):
            raise ConfigError("model.name: merlin needs a despeckling U-Net (merlin_unet)")

    def bind_dataset(self, dataset: Any) -> None:
        """Estimate the sensor statistics from the training scenes and store them in the encoder."""
        stats = getattr(dataset, "sensor_statistics", None)
        if stats is None:
            return
        s = stats()
        self.encoder.set_sensor_statistics(s["log_min"], s["log_max"], s["eps"])

    def _parts(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        image = batch["image"]
        if image.ndim != 4 or image.shape[1] != 2:
            raise ValueError(f"merlin: expected image float[B, 2, H, W] (real, imaginary), got {tuple(image.shape)}")
        seeds = batch.get("seed")
        if seeds is None:  # no per-sample seeds: alternate by position in the batch
            flip = torch.arange(image.shape[0], device=image.device) % 2 == 1
        else:
            flip = torch.as_tensor(seeds, device=image.device).long() % 2 == 1
        flip = flip.view(-1, 1, 1, 1)
        real, imag = image[:, :1], image[:, 1:]
        inputs = torch.where(flip, imag, real)
        targets = torch.where(flip, real, imag)
        return inputs, targets, flip.view(-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        inputs, targets, flip = self._parts(batch)
        log_r = self.encoder.log_reflectivity(self.encoder(self.encoder.normalise(inputs)))
        per_sample = merlin_loss(log_r, targets, self.encoder.eps, reduce=False)
        out = {"loss": per_sample.mean()}
        with torch.no_grad():
            for name, sel in (("nll_imag_from_real", ~flip), ("nll_real_from_imag", flip)):
                out[name] = per_sample[sel].mean() if sel.any() else torch.tensor(float("nan"))
        return out

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """Held-out NLL, the ratio-image mean (noisy / despeckled intensity; 1 when radiometry is kept) and, when
        the batch carries a simulated ``"clean"`` amplitude, the PSNR of the despeckled amplitude against it
        (range: the clean batch's maximum)."""
        image = batch["image"].float()
        out = {"val_nll": float(self(batch)["loss"])}
        log_r = torch.stack([self.encoder.log_reflectivity(self.encoder(self.encoder.normalise(image[:, k:k + 1])))
                             for k in range(2)])
        r_hat = 0.5 * (torch.exp(log_r[0]) + torch.exp(log_r[1]))
        intensity = image.square().sum(dim=1, keepdim=True)
        out["ratio_mean"] = float((intensity / r_hat.clamp_min(1e-30)).mean())
        if "clean" in batch:
            clean = batch["clean"].float()
            out["psnr"] = psnr(torch.sqrt(r_hat), clean, float(clean.max()))
        return out

    @torch.no_grad()
    def embed(self, batch: dict[str, Any]) -> Tensor:
        """Bottleneck features of the normalised real part (MERLIN has no embedding; monitoring only)."""
        return self.encoder.embed(self.encoder.normalise(batch["image"][:, :1]))
