"""Despeckling scenes larger than memory: lazily read, lazily Doppler-centred, written tile by tile to disk.

:func:`despeckle_scene` opens the SLC memory-mapped (:func:`~modalities.sar.readers.open_slc`), estimates the
Doppler centroid on a central window, wraps the scene in a :class:`~modalities.sar.doppler.CentredView` (centring
is a pixel-wise phase ramp, so each window is centred exactly as the whole scene would be) and hands it to the
despeckler's ``denoise(x, out=...)`` with a memory-mapped ``.npy`` output. The despeckler
(:meth:`models.unet2d.MerlinUNet.denoise`) reads one ``tile x tile`` window at a time, so peak memory is one tile's
activations plus the pages of the input and output maps in use, independent of the scene size
(``benchmarks/sar_despeckling.py`` measures it on a 4k x 4k scene). Tiles overlap by a margin that is computed and
discarded, with origins on the network's pooling grid, so there are no seams
(``tests/modalities/sar/test_tiling.py`` compares tiled and untiled outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modalities.sar.doppler import CentredView, doppler_centroid
from modalities.sar.readers import open_slc

__all__ = ["centred_scene", "despeckle_scene"]


def centred_scene(path: str | Path, stats_window: int = 1024, band: int | None = None) -> CentredView:
    """A lazily Doppler-centred view of the SLC at ``path`` (``band``: the channel of a polarisation stack; centroid
    estimated on a central window)."""
    scene = open_slc(path, band)
    h, w = scene.shape
    r0, c0 = max(0, (h - stats_window) // 2), max(0, (w - stats_window) // 2)
    f_az, f_rg = doppler_centroid(scene.window(r0, min(h, r0 + stats_window), c0, min(w, c0 + stats_window)))
    return CentredView(scene, f_az, f_rg)


def despeckle_scene(denoiser: Any, path: str | Path, out_path: str | Path, stats_window: int = 1024,
                    band: int | None = None) -> Path:
    """Despeckle the SLC at ``path`` (``band``: the channel of a polarisation stack) into ``out_path``
    (float32[1, H, W] amplitude ``.npy``), tile by tile.

    ``denoiser`` is any object with ``denoise(x, out=...)`` over array-likes (a :class:`models.unet2d.MerlinUNet`).
    The output is written to ``<out_path>.tmp`` and renamed when complete.
    """
    view = centred_scene(path, stats_window, band)
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(1, *view.shape))
    denoiser.denoise(view, out=out)
    out.flush()
    del out
    tmp.replace(out_path)
    return out_path
