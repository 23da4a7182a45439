"""Tiles of a large scene for a fully convolutional network: windows on the network's pooling grid with cut
margins (:func:`tile_windows`), or the reference code's strided windows (:func:`strided_origins`), and the reading of
one window of a complex image in either layout (complex[H, W] or float[2, H, W], memory-mapped or not)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ["parts_first", "read_parts", "strided_origins", "tile_windows"]


def strided_origins(n: int, size: int, stride: int) -> list[int]:
    """Window origins along an axis of ``n`` pixels for ``size``-pixel windows every ``stride`` pixels, the last
    one flush with the far border (deepdespeckling's rule); ``[0]`` when one window covers the axis."""
    if n <= size:
        return [0]
    return [*range(0, n - size, stride), n - size]


def tile_windows(h: int, w: int, tile: int, overlap: int) -> list[tuple[tuple[int, int, int, int],
                                                                         tuple[int, int, int, int]]]:
    """Tiles covering an ``h x w`` scene: ``(window, core)`` pairs of ``(r0, r1, c0, c1)`` boxes.

    Cores partition the scene; each window is its core grown by ``overlap`` (clipped at the scene border), with
    origins on multiples of 32 so that every tile pools on the same grid as the whole scene would. A scene no
    larger than ``tile`` is one window.
    """
    def axis(n: int) -> list[tuple[int, int, int, int]]:
        if n <= tile:
            return [(0, n, 0, n)]
        step = tile - 2 * overlap
        spans = []
        for k0 in range(0, n, step):
            k1 = min(n, k0 + step)
            lo, hi = max(0, k0 - overlap), min(n, k1 + overlap)
            spans.append((lo, hi, k0, k1))
        return spans

    return [((a0, a1, b0, b1), (k0, k1, l0, l1)) for a0, a1, k0, k1 in axis(h) for b0, b1, l0, l1 in axis(w)]


def parts_first(x: Any) -> bool:
    dtype = np.dtype(str(x.dtype).replace("torch.", ""))
    if np.issubdtype(dtype, np.complexfloating):
        if len(x.shape) != 2:
            raise ValueError(f"denoise: expected complex[H, W], got shape {tuple(x.shape)}")
        return False
    if len(x.shape) == 3 and x.shape[0] == 2:
        return True
    raise ValueError(f"denoise: expected complex[H, W] or float[2, H, W] (real, imaginary), got {dtype} "
                     f"{tuple(x.shape)}")


def read_parts(x: Any, r0: int, r1: int, c0: int, c1: int, parts_first: bool,
                window_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """float32[2, h, w] real and imaginary parts of one window, after ``window_fn`` (on the complex window) if
    given; float parts are joined as ``re + 1j * im`` in their own precision (complex64 for float32)."""
    win = x[:, r0:r1, c0:c1] if parts_first else x[r0:r1, c0:c1]
    win = win.detach().cpu().numpy() if isinstance(win, torch.Tensor) else np.asarray(win)
    if window_fn is None and parts_first:
        return np.ascontiguousarray(win, dtype=np.float32)
    if parts_first:
        win = win[0] + 1j * win[1]
    if window_fn is not None:
        win = np.asarray(window_fn(win))
        if win.shape != (r1 - r0, c1 - c0) or not np.iscomplexobj(win):
            raise ValueError(f"denoise: window_fn must return complex[{r1 - r0}, {c1 - c0}], got {win.dtype} "
                             f"{win.shape}")
    return np.stack([win.real, win.imag]).astype(np.float32)
