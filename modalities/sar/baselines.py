"""Classical speckle filters: boxcar, Lee and refined Lee, on the intensity ``I = |z|^2`` of an SLC.

Each takes a complex[H, W] SLC (numpy or torch; or float[2, H, W] real/imaginary parts) and returns the filtered
amplitude float32[1, H, W], the output convention of :meth:`models.unet2d.MerlinUNet.denoise`, so that they are
compared on the same inputs (``meta["baselines"]`` of the SAR probes, ``benchmarks/sar_despeckling.py``).

- Boxcar: the local mean of ``I`` over a ``size x size`` window (a multi-look estimate).
- Lee (J.-S. Lee, "Digital image enhancement and noise filtering by use of local statistics", IEEE TPAMI 1980):
  with local mean ``m`` and variance ``v`` of ``I`` and the speckle's squared coefficient of variation
  ``s2 = 1 / L`` (``L`` looks),  ``var_x = max(0, (v - m^2 s2) / (1 + s2))``, ``k = var_x / v`` and
  ``I_hat = m + k (I - m)``: flat areas get the mean, strong variation (edges, points) is kept.
- Refined Lee (J.-S. Lee, "Refined filtering of image noise using local statistics", CGIP 1981): in a 7x7 window,
  the 3x3 means of nine 3x3 blocks give the edge direction (largest of four 3x3 gradient masks: horizontal,
  vertical and both diagonals); the local statistics are then taken over the half of the window on the side of
  the edge that resembles the centre (one of eight edge-aligned windows, the edge line included), and the Lee
  estimate uses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["BASELINES", "boxcar", "intensity", "lee", "refined_lee"]


def intensity(x: Any) -> np.ndarray:
    """``|z|^2`` as float64[H, W] of a complex[H, W] SLC or float[2, H, W] parts (numpy or torch)."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if np.iscomplexobj(a):
        return np.abs(a.astype(np.complex128)) ** 2
    if a.ndim == 3 and a.shape[0] == 2:
        return a[0].astype(np.float64) ** 2 + a[1].astype(np.float64) ** 2
    raise ValueError(f"expected complex[H, W] or float[2, H, W], got {a.dtype} {a.shape}")


def _amplitude(i_hat: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(i_hat, 0.0)).astype(np.float32)[None]


def _local_stats(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    m = ndimage.uniform_filter(img, size, mode="reflect")
    v = ndimage.uniform_filter(img * img, size, mode="reflect") - m * m
    return m, np.maximum(v, 0.0)


def _lee_estimate(img: np.ndarray, m: np.ndarray, v: np.ndarray, looks: float) -> np.ndarray:
    s2 = 1.0 / looks
    var_x = np.maximum(0.0, (v - m * m * s2) / (1.0 + s2))
    k = np.where(v > 0, var_x / np.maximum(v, 1e-30), 0.0)
    return m + k * (img - m)


def boxcar(x: Any, size: int = 7) -> np.ndarray:
    """Boxcar (moving-average) filter of the intensity; amplitude float32[1, H, W]."""
    return _amplitude(ndimage.uniform_filter(intensity(x), size, mode="reflect"))


def lee(x: Any, size: int = 7, looks: float = 1.0) -> np.ndarray:
    """Lee MMSE filter of the intensity over ``size x size`` windows; amplitude float32[1, H, W]."""
    img = intensity(x)
    m, v = _local_stats(img, size)
    return _amplitude(_lee_estimate(img, m, v, looks))


def _edge_windows() -> list[np.ndarray]:
    """The eight 7x7 edge-aligned half windows, in the order (h+, h-, v+, v-, d1+, d1-, d2+, d2-)."""
    dy, dx = np.mgrid[-3:4, -3:4]
    masks = [dx >= 0, dx <= 0, dy >= 0, dy <= 0, dx - dy >= 0, dx - dy <= 0, dx + dy >= 0, dx + dy <= 0]
    return [m.astype(np.float64) for m in masks]


def refined_lee(x: Any, looks: float = 1.0) -> np.ndarray:
    """Refined Lee filter (7x7, eight edge-aligned windows) of the intensity; amplitude float32[1, H, W]."""
    img = intensity(x)
    h, w = img.shape
    pad = np.pad(img, 5, mode="reflect")
    mean3 = ndimage.uniform_filter(pad, 3, mode="reflect")

    def block(i: int, j: int) -> np.ndarray:  # mean of the 3x3 block at offset (2(i-1), 2(j-1)) from the centre
        r, c = 5 + 2 * (i - 1), 5 + 2 * (j - 1)
        return mean3[r:r + h, c:c + w]

    b = [[block(i, j) for j in range(3)] for i in range(3)]
    grads = np.stack([
        np.abs(b[0][2] + b[1][2] + b[2][2] - b[0][0] - b[1][0] - b[2][0]),  # horizontal change: vertical edge
        np.abs(b[2][0] + b[2][1] + b[2][2] - b[0][0] - b[0][1] - b[0][2]),  # vertical change
        np.abs(b[0][1] + b[0][2] + b[1][2] - b[1][0] + 0 - b[2][0] - b[2][1]),  # towards the upper right
        np.abs(b[0][0] + b[0][1] + b[1][0] - b[1][2] - b[2][1] - b[2][2]),  # towards the upper left
    ])
    direction = np.argmax(grads, axis=0)
    centre = b[1][1]
    # for each direction: is the first window's side (h+: right, v+: down, d1+: upper right, d2+: lower right)
    # closer to the centre than the opposite side?
    first_side = np.stack([
        np.abs(b[1][2] - centre) <= np.abs(b[1][0] - centre),
        np.abs(b[2][1] - centre) <= np.abs(b[0][1] - centre),
        np.abs(b[0][2] - centre) <= np.abs(b[2][0] - centre),
        np.abs(b[2][2] - centre) <= np.abs(b[0][0] - centre),
    ])
    choice = 2 * direction + np.where(np.take_along_axis(first_side, direction[None], 0)[0], 0, 1)
    m = np.empty_like(img)
    v = np.empty_like(img)
    for k, mask in enumerate(_edge_windows()):
        sel = choice == k
        if not sel.any():
            continue
        wsum = mask.sum()
        mk = ndimage.correlate(img, mask / wsum, mode="reflect")
        vk = ndimage.correlate(img * img, mask / wsum, mode="reflect") - mk * mk
        m[sel], v[sel] = mk[sel], np.maximum(vk[sel], 0.0)
    return _amplitude(_lee_estimate(img, m, v, looks))


BASELINES = {"boxcar 7x7": boxcar, "Lee 7x7": lee, "refined Lee": refined_lee}
