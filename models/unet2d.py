"""The MERLIN U-Net: a residual 2-D U-Net that despeckles one part (real or imaginary) of a single-look complex
SAR image in the normalised log domain (Dalsasso, Denis, Tupin, "As if by magic: self-supervised training of deep
despeckling networks with MERLIN", IEEE TGRS 2021; the network of Lehtinen et al., "Noise2Noise", ICML 2018).

Input normalisation of one part ``a`` (real or imaginary, any sign) with the sensor statistics ``m``, ``M`` (min
and max of ``0.5 log(a^2 + eps)`` on the sensor's training data; :meth:`MerlinUNet.set_sensor_statistics`)::

    x = (log(a^2 + eps) - 2 m) / (2 (M - m))                         (about 0..1)

The network predicts the normalised log-amplitude of the reflectivity with a residual output
``y = x - n(x)``, from which ``log R = 2 (y (M - m) + m)`` and ``R = exp(log R)``. ``n`` is a U-Net with
LeakyReLU(0.1) after every convolution but the last, five 2x2 max-poolings and nearest-neighbour upsampling::

    enc0, enc1 (48)  pool  enc2 (48)  pool  enc3 (48)  pool  enc4 (48)  pool  enc5 (48)  pool  enc6 (48)
    up, cat skip4 -> dec5, dec5b (96)     up, cat skip3 -> dec4, dec4b (96)    up, cat skip2 -> dec3, dec3b (96)
    up, cat skip1 -> dec2, dec2b (96)     up, cat input -> dec1a (64), dec1b (32), dec1 (1)

all 3x3 convolutions with zero "same" padding; 988,609 parameters at ``width=48``, the layer names and shapes of
the published weights (:func:`load_published_merlin`), so those load exactly.

Inference (:meth:`MerlinUNet.denoise`) despeckles the real and the imaginary part separately and combines them in
intensity, ``R = (R_re + R_im) / 2``, returning the amplitude ``sqrt(R)``. Large scenes are processed in tiles whose
origins sit on the 32-pixel pooling grid, each with an ``overlap`` margin that is computed and thrown away, so the
result equals the untiled one up to the network's (small) response beyond the margin, with memory bounded by one
tile. Inputs may be any array-like with ``.shape`` and slicing (a memory-mapped file, a lazily Doppler-centred view).

Reference parity: ``deepdespeckling``'s ``MerlinDenoiser(name, symetrise=True).denoise_image(z, 256, 254)`` is
``load_published_merlin(name, tile=256).denoise(z, stride=254, window_fn=centre_spectrum_bins)`` (median relative
difference 1.4e-6, max 1.1e-5 on the 500 x 500 ENVISAT SLC; ``tests/modalities/sar/test_merlin_reference_parity.py``).
The normalisation, the network, the log-domain averaging and the intensity combination are the same maths. Our
default differs deliberately in two places, together the 12.5 % (median relative difference per pixel of the
amplitude) measured on that SLC with the stripmap weights (``benchmarks/merlin_reference_pair.py``):

- centring: one continuous phase ramp for the whole scene (:func:`modalities.sar.doppler.centre_spectrum`: sub-bin
  centroid, the same for every window, so overlapping windows see the same input) instead of a whole-bin roll
  estimated in every 256-pixel window with the window's own origin (a constant phase per window): 5.9 % alone
  (with the reference's tiling on both sides). The network's estimate moves by that much with the phase of its
  input (the reference's own output with and without its centring differs by 7.5 %).
- tiling: cut margins instead of averaged 256-pixel windows: 8.2 % alone (scene centring on both sides). Our tiles
  stay within 1.0 % of the untiled network output (256- vs 512-pixel tiles), because the 64-pixel margins, within
  the network's receptive field of a window's zero-padded border, are discarded and every origin sits on the
  pooling grid; the reference keeps every pixel of its windows, and its last window starts off the grid (244).

Speed: ``denoise`` runs :meth:`MerlinUNet.residual_subpixel` (the decoder's upsample + concatenate + conv at low
resolution, 26 % fewer multiply-adds; strided-maximum pooling; the 1-channel input and output convolutions as
products), one part per forward. On the ENVISAT SLC in the reference's mode, one thread, five interleaved rounds
(``benchmarks/results/merlin_reference_pair.json``, 2 shared cores at load ~9): reference 39.7 s/MP, ours 23.8 s/MP
(1.67x; 1.36-1.77x per round) for the same output; the same pipeline with the plain network 35.7 s/MP (1.11x).

Shapes: ``forward``: float[B, 1, H, W] with H, W multiples of 32 -> float[B, 1, H, W];
``denoise``: complex[H, W] or float[2, H, W] (real, imaginary) -> float[1, H, W] amplitude.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.tiling import parts_first, read_parts, strided_origins, tile_windows
from models.unet2d_ops import TAPS, conv3x3_to_one, max_pool2x2, upsampled_conv

__all__ = ["MerlinUNet", "PUBLISHED_MERLIN", "load_published_merlin", "strided_origins", "tile_windows"]

POOLING = 32  # 2^5: tile origins and padded sizes are multiples of this, so the pooling grid never shifts


class MerlinUNet(nn.Module):
    """MERLIN despeckling U-Net (residual output in the normalised log domain).

    Args:
        width: channels of the encoder (48 in the paper); the decoder uses ``2 width`` and the last two
            convolutions ``4 width / 3`` and ``2 width / 3``.
        log_min: ``m``, the sensor's minimum of ``0.5 log(a^2 + eps)``; None until the training data sets it.
        log_max: ``M``, the sensor's maximum.
        eps: added to ``a^2`` before the log (1e-3 in the paper's code, where amplitudes are in the hundreds; our
            training sets it relative to the data's mean intensity).
        tile: side of an inference tile (a multiple of 32).
        overlap: margin computed around each tile's kept core and discarded (a multiple of 32).

    >>> net = MerlinUNet(log_min=-1.429, log_max=10.089)
    >>> sum(p.numel() for p in net.parameters())
    988609
    >>> net.denoise(np.ones((64, 64), np.complex64)).shape
    (1, 64, 64)
    """

    def __init__(self, width: int = 48, log_min: float | None = None, log_max: float | None = None,
                 eps: float = 1e-3, tile: int = 512, overlap: int = 64) -> None:
        super().__init__()
        if tile % POOLING or overlap % POOLING or tile <= 2 * overlap:
            raise ValueError(f"model.tile {tile} and model.overlap {overlap} must be multiples of {POOLING} "
                             f"with tile > 2 * overlap")
        w, d = int(width), 2 * int(width)
        conv = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1)  # noqa: E731
        self.enc0, self.enc1 = conv(1, w), conv(w, w)
        self.enc2, self.enc3, self.enc4, self.enc5, self.enc6 = (conv(w, w) for _ in range(5))
        self.dec5, self.dec5b = conv(2 * w, d), conv(d, d)
        self.dec4, self.dec4b = conv(d + w, d), conv(d, d)
        self.dec3, self.dec3b = conv(d + w, d), conv(d, d)
        self.dec2, self.dec2b = conv(d + w, d), conv(d, d)
        self.dec1a, self.dec1b = conv(d + 1, (4 * w) // 3), conv((4 * w) // 3, (2 * w) // 3)
        self.dec1 = conv((2 * w) // 3, 1)
        self.tile, self.overlap = int(tile), int(overlap)
        self.eps = float(eps)
        self.log_min = None if log_min is None else float(log_min)
        self.log_max = None if log_max is None else float(log_max)
        self.embed_dim = w

    # ----------------------------------------------------------------------------------------- the network

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``n(x)``: float[B, 1, H, W] -> float[B, 1, H, W] (H, W multiples of 32)."""
        act = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
        skips = [x]
        h = act(self.enc1(act(self.enc0(x))))
        for layer in (self.enc2, self.enc3, self.enc4, self.enc5):
            h = F.max_pool2d(h, 2)
            skips.append(h)
            h = act(layer(h))
        h = act(self.enc6(F.max_pool2d(h, 2)))
        for a, b in ((self.dec5, self.dec5b), (self.dec4, self.dec4b), (self.dec3, self.dec3b), (self.dec2, self.dec2b)):
            h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1)
            h = act(b(act(a(h))))
        h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1)
        return self.dec1(act(self.dec1b(act(self.dec1a(h)))))

    def residual_subpixel(self, x: torch.Tensor, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`residual` with 26 % fewer multiply-adds (16.6 vs 22.5 GFLOP at 256^2), for inference; equal up to
        float rounding.

        A 3x3 convolution of a nearest-neighbour 2x upsampling reads, for each output parity ``(a, b)``, only a
        2x2 block of the low-resolution map: along an axis, even outputs ``2i`` see rows ``i - 1`` (tap 0) and
        ``i`` (taps 1 + 2), odd outputs ``2i + 1`` see ``i`` (taps 0 + 1) and ``i + 1`` (tap 2). Each decoder's
        first convolution ``conv(cat(up(h), skip))`` is therefore four 2x2 convolutions of ``h`` at low resolution
        (16 instead of 36 multiply-adds per low-resolution pixel and channel pair), interleaved, plus the 3x3
        convolution of the skip part at full resolution; neither the upsampled map nor the concatenation is built.
        The 2x2 max-poolings are two element-wise maxima of strided views (the same values; ``max_pool2d`` takes
        ~6x longer on this CPU).
        """
        kernels = self.subpixel_kernels() if kernels is None else kernels
        act = lambda t: F.leaky_relu(t, 0.1, inplace=True)  # noqa: E731
        skips = [x]
        h = act(self.enc1(act(self.enc0(x))))
        for layer in (self.enc2, self.enc3, self.enc4, self.enc5):
            h = max_pool2x2(h)
            skips.append(h)
            h = act(layer(h))
        h = act(self.enc6(max_pool2x2(h)))
        for (a, b), k in zip(((self.dec5, self.dec5b), (self.dec4, self.dec4b), (self.dec3, self.dec3b),
                              (self.dec2, self.dec2b)), kernels):
            h = act(b(act(upsampled_conv(a, k, h, skips.pop()))))
        h = act(upsampled_conv(self.dec1a, kernels[4], h, skips.pop()))
        return conv3x3_to_one(self.dec1, act(self.dec1b(h)))

    def subpixel_kernels(self) -> list[torch.Tensor]:
        """The 2x2 phase kernels float[4 O, C, 2, 2] of dec5, dec4, dec3, dec2 and dec1a for
        :meth:`residual_subpixel` (computed once per :meth:`denoise` call)."""
        out = []
        for conv, low_c in ((self.dec5, self.enc6.out_channels), (self.dec4, self.dec5b.out_channels),
                            (self.dec3, self.dec4b.out_channels), (self.dec2, self.dec3b.out_channels),
                            (self.dec1a, self.dec2b.out_channels)):
            taps = TAPS.to(conv.weight)
            phases = torch.einsum("aik,ockl,bjl->abocij", taps, conv.weight[:, :low_c], taps)
            out.append(phases.reshape(4 * conv.out_channels, low_c, 2, 2).contiguous())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log-amplitude estimate ``y = x - n(x)``; float[B, 1, H, W] -> float[B, 1, H, W]."""
        self._check(x)
        return x - self.residual(x)

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[-1] % POOLING or x.shape[-2] % POOLING:
            raise ValueError(f"MerlinUNet: expected float[B, 1, H, W] with H, W multiples of {POOLING}, "
                             f"got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, width]: the bottleneck of a normalised part float[B, 1, H, W], averaged over space (for
        monitoring only; MERLIN has no embedding)."""
        h = F.leaky_relu(self.enc1(F.leaky_relu(self.enc0(x), 0.1)), 0.1)
        for layer in (self.enc2, self.enc3, self.enc4, self.enc5, self.enc6):
            h = F.leaky_relu(layer(F.max_pool2d(h, 2)), 0.1)
        return h.mean(dim=(-2, -1))

    # ---------------------------------------------------------------------------------------- normalisation

    def set_sensor_statistics(self, log_min: float, log_max: float, eps: float) -> None:
        """Store the sensor's normalisation (also in ``config``, so that it is saved with the model)."""
        if not (math.isfinite(log_min) and math.isfinite(log_max) and log_max > log_min and eps > 0):
            raise ValueError(f"bad sensor statistics: log_min {log_min}, log_max {log_max}, eps {eps}")
        self.log_min, self.log_max, self.eps = float(log_min), float(log_max), float(eps)
        if isinstance(getattr(self, "config", None), dict):
            self.config.update(log_min=self.log_min, log_max=self.log_max, eps=self.eps)

    def _stats(self) -> tuple[float, float]:
        if self.log_min is None or self.log_max is None:
            raise ValueError("MerlinUNet has no sensor statistics (log_min/log_max): train it on the sensor's data "
                             "or pass them to models.create")
        return self.log_min, self.log_max

    def normalise(self, part: torch.Tensor) -> torch.Tensor:
        """``(log(a^2 + eps) - 2m) / (2(M - m))`` of a real or imaginary part (any shape)."""
        m, big_m = self._stats()
        return (torch.log(part.float().square() + self.eps) - 2.0 * m) / (2.0 * (big_m - m))

    def log_reflectivity(self, y: torch.Tensor) -> torch.Tensor:
        """``log R = 2 (y (M - m) + m)`` from a normalised network output."""
        m, big_m = self._stats()
        return 2.0 * (y * (big_m - m) + m)

    # -------------------------------------------------------------------------------------------- inference

    @torch.no_grad()
    def _log_r_parts(self, parts: torch.Tensor, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """float[2, h, w] real/imag parts -> float[2, h, w] log R estimated from each part alone; pads to the
        pooling grid by reflection (bottom/right), exactly as a tile that ends at the scene border does."""
        h, w = parts.shape[-2:]
        ph, pw = (-h) % POOLING, (-w) % POOLING
        x = self.normalise(parts).unsqueeze(1)  # [2, 1, h, w]: real and imaginary parts
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        self._check(x)
        # one part at a time: a batch of one keeps more of each layer's activations in cache (on this 1-thread
        # AVX2 CPU, two batches of one take 0.94 s at 256^2 where one batch of two takes 1.31 s)
        residual = torch.cat([self.residual_subpixel(x[i:i + 1], kernels) for i in range(x.shape[0])])
        return self.log_reflectivity(x - residual)[:, 0, :h, :w]

    @torch.no_grad()
    def _log_r_window(self, parts: torch.Tensor, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """float[2, h, w] real/imag parts -> float[h, w] log of ``(R_re + R_im) / 2``."""
        log_r = self._log_r_parts(parts, kernels)
        return torch.logaddexp(log_r[0], log_r[1]) - math.log(2.0)

    @torch.no_grad()
    def held_out_ratio(self, x: Any) -> float:
        """Mean over pixels (no-data zeros excluded) of ``(2 b_im^2 / R(a_re) + 2 b_re^2 / R(a_im)) / 2``: each
        part's intensity over the reflectivity estimated from the *other* part, the quantity MERLIN's loss fits.

        It is 1 for an unbiased estimator. The usual ratio ``|z|^2 / R^`` sits below it by how much each part's
        estimate follows the speckle of its own input (it shares that speckle with ``|z|^2``), so the pair tells
        radiometric bias from residual speckle. ``x``: complex[H, W] or float[2, H, W], one window (no tiling).
        """
        window = read_parts(x, 0, x.shape[-2], 0, x.shape[-1], parts_first(x)).astype(np.float64)
        r = torch.exp(self._log_r_parts(torch.from_numpy(window).float().to(next(self.parameters()).device)))
        r = r.double().cpu().numpy()
        valid = (window ** 2).sum(0) > 0
        cross = 0.5 * (2.0 * window[1] ** 2 / r[0] + 2.0 * window[0] ** 2 / r[1])
        return float(cross[valid].mean())

    @torch.no_grad()
    def denoise(self, x: Any, out: Any = None, *, stride: int | None = None,
                window_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Despeckled amplitude ``sqrt((R_re + R_im) / 2)`` of a single-look complex image.

        Args:
            x: complex[H, W] (numpy, torch or any array-like with ``.shape``/``.dtype`` and 2-D slicing, e.g. a
                memory map) or float[2, H, W] real and imaginary parts. Its Doppler spectrum should be centred
                (:func:`modalities.sar.doppler.centre_spectrum`); centring does not change the amplitude.
            out: optional float32 array-like [1, H, W] (e.g. a memory-mapped ``.npy``) written tile by tile.
            stride: None (default): cropped tiles, ``tile`` windows whose ``overlap`` margins are discarded (no
                seams; peak memory one window). An integer: deepdespeckling's tiling, ``tile x tile`` windows at
                origins ``0, stride, 2 stride, ...`` plus one flush with the far border, each pixel's log
                estimate of each part averaged over the windows that cover it (its ``denoise_image(z, 256, 254)``
                is ``tile=256, stride=254``); this mode holds three float64 planes of the scene in memory.
            window_fn: applied to every window as complex[h, w] before the network, e.g.
                :func:`modalities.sar.doppler.centre_spectrum_bins`, deepdespeckling's per-window centring
                (``symetrise=True``). With ``stride=254`` and ``tile=256`` that reproduces its output.

        Returns float32[1, H, W] amplitude (``out`` when given).
        """
        layout = parts_first(x)
        h, w = x.shape[-2:]
        if out is None:
            out = np.empty((1, h, w), np.float32)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        kernels = self.subpixel_kernels()
        read = lambda r0, r1, c0, c1: torch.from_numpy(  # noqa: E731
            read_parts(x, r0, r1, c0, c1, layout, window_fn)).to(device)
        if stride is None:
            for (r0, r1, c0, c1), (kr0, kr1, kc0, kc1) in tile_windows(h, w, self.tile, self.overlap):
                log_r = self._log_r_window(read(r0, r1, c0, c1), kernels)
                core = log_r[kr0 - r0:kr1 - r0, kc0 - c0:kc1 - c0]
                out[0, kr0:kr1, kc0:kc1] = torch.exp(0.5 * core).cpu().numpy()
        else:
            if not 0 < int(stride) <= self.tile:
                raise ValueError(f"denoise: stride {stride} must be in 1..tile ({self.tile})")
            sums, count = np.zeros((2, h, w)), np.zeros((h, w))
            for r0 in strided_origins(h, self.tile, int(stride)):
                for c0 in strided_origins(w, self.tile, int(stride)):
                    r1, c1 = min(h, r0 + self.tile), min(w, c0 + self.tile)
                    sums[:, r0:r1, c0:c1] += self._log_r_parts(read(r0, r1, c0, c1), kernels).double().cpu().numpy()
                    count[r0:r1, c0:c1] += 1.0
            log_r = sums / count
            out[0] = np.exp(0.5 * (np.logaddexp(log_r[0], log_r[1]) - math.log(2.0))).astype(np.float32)
        self.train(was_training)
        return out


# -------------------------------------------------------------------------------- published MERLIN weights

# Published MERLIN models in the ``deepdespeckling`` package (MIT): file and the (M, m) constants of its code.
PUBLISHED_MERLIN: dict[str, dict[str, Any]] = {
    "stripmap": {"file": "saved_models/stripmap.pth", "log_max": 10.089038980848645, "log_min": -1.429329123112601,
                 "sensor": "TerraSAR-X stripmap"},
    "spotlight": {"file": "saved_models/spotlight.pth", "log_max": 10.089038980848645, "log_min": -1.429329123112601,
                  "sensor": "TerraSAR-X spotlight"},
    "sentinel_tops": {"file": "saved_models/sentinel_tops.pth", "log_max": 12.385, "log_min": -math.log(0.001),
                      "sensor": "Sentinel-1 TOPS"},
}


def load_published_merlin(name: str, path: str | Path | None = None, **kwargs: Any) -> MerlinUNet:
    """A :class:`MerlinUNet` with the published MERLIN weights ``name`` (``stripmap``, ``spotlight``,
    ``sentinel_tops``) from the installed ``deepdespeckling`` package (or ``path``) and that model's constants.

    The ``.pth`` file is read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
    containers (no arbitrary objects are unpickled); the layer names are already ours, and every tensor's shape
    is checked by ``load_state_dict(strict=True)``.
    """
    if name not in PUBLISHED_MERLIN:
        raise ValueError(f"unknown published MERLIN model {name!r}; known: {', '.join(PUBLISHED_MERLIN)}")
    spec = PUBLISHED_MERLIN[name]
    if path is None:
        import importlib.util

        found = importlib.util.find_spec("deepdespeckling")
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError("the published MERLIN weights ship in the 'deepdespeckling' package; install it")
        path = Path(list(found.submodule_search_locations)[0]) / "merlin" / spec["file"]
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = MerlinUNet(width=48, log_min=spec["log_min"], log_max=spec["log_max"], eps=1e-3, **kwargs)
    model.load_state_dict({str(k): v for k, v in state.items()}, strict=True)
    model.config = {"name": "merlin_unet", "width": 48, "log_min": spec["log_min"], "log_max": spec["log_max"],
                    "eps": 1e-3, "tile": model.tile, "overlap": model.overlap}
    return model.eval()
