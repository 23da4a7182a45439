"""Despeckling probes: simulated speckle with a clean reference, and real SLCs scored without one.

Both are ``task="denoising"`` :class:`~modalities.base.ProbeSet` s evaluated generically by
:mod:`pretrain.evaluate.denoising`: every despeckler's ``denoise(x)`` (x: Doppler-centred complex64[H, W]) returns
amplitude float32[1, H, W]; boxcar, Lee and refined Lee run on the same inputs (``meta["baselines"]``).

- ``simulated speckle`` (only when the run's data is the simulated default, whose sensor it shares): the held-out
  pictures :data:`~modalities.sar.simulate.TEST_IMAGES` under a fresh speckle draw; PSNR/SSIM of the amplitude
  against the expected amplitude ``sqrt(|h|^2 * R)`` in the range ``[0, A0]``.
- ``real SLC``: central crops (at most ``probe_size`` a side) of up to ``probe_scenes`` of the run's images (the
  selected channels of polarisation stacks, ``data.polarisation``). No clean reference: ENL (mean^2 / var of the
  output intensity) in automatically found homogeneous boxes, and the ratio image noisy / despeckled intensity
  (mean 1 and variance 1 for a filter that removes only single-look speckle; structure in its picture is removed
  signal).

ENL boxes are 48 x 48 where one fits; in a smaller scene (a 100 x 50 crop has no 48 x 48 box inside its 8-pixel
border) they shrink (32, 24, 16, 12, 8) until one fits, so that a report always has ENL, and the box size used is
named in the report's ENL column (``pretrain.evaluate.denoising_scores``: ``enl_box``) and printed in one line.
Fewer pixels per box make ENL noisier (its relative standard error is about sqrt(2 / (pixels / correlation area))).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from modalities.base import ProbeSet
from modalities.sar.baselines import BASELINES
from modalities.sar.doppler import centre_spectrum
from modalities.sar.options import SarOptions
from modalities.sar.readers import find_slc_images, notice
from modalities.sar.simulate import AMPLITUDE_SCALE, BANDWIDTH, DOPPLER, TEST_IMAGES, clean_reflectivity, simulate_slc

__all__ = ["ENL_BOX_SIZES", "homogeneous_boxes", "probe_targets", "real_probe", "simulated_probe"]

Box = tuple[int, int, int, int]
#: ENL box sides tried in order: the first that fits the image is used
ENL_BOX_SIZES = (48, 32, 24, 16, 12, 8)


def homogeneous_boxes(intensity: np.ndarray, size: int = 48, n: int = 3, block: int = 8, border: int = 8,
                      shrink: bool = True) -> list[Box]:
    """``n`` non-overlapping ``size x size`` boxes where the intensity looks most homogeneous.

    Homogeneity of a box: the coefficient of variation of its ``block x block`` means (pure speckle leaves only the
    small spread of block averages; an edge or a texture raises it). Boxes touching exact zeros (no-data borders)
    or within ``border`` pixels of the image edge are skipped. With ``shrink``, when no ``size`` box fits, the
    smaller sides of :data:`ENL_BOX_SIZES` are tried in turn (block and border shrink with them); the side used is
    ``r1 - r0`` of the boxes. An image smaller than 8 x 8 has none.
    """
    boxes = _boxes(intensity, size, n, block, border)
    if boxes or not shrink:
        return boxes
    for side in (s for s in ENL_BOX_SIZES if s < size):
        boxes = _boxes(intensity, side, n, max(2, min(block, side // 4)), min(border, side // 6))
        if boxes:
            return boxes
    return []


def _boxes(intensity: np.ndarray, size: int, n: int, block: int, border: int) -> list[Box]:
    img = np.asarray(intensity, np.float64)
    h, w = img.shape
    means = ndimage.uniform_filter(img, block, mode="reflect")
    nodata = ndimage.maximum_filter((img == 0).astype(np.uint8), size, mode="constant") > 0
    cands = []
    step = max(4, size // 4)
    for r in range(border, h - size - border + 1, step):
        for c in range(border, w - size - border + 1, step):
            if nodata[r + size // 2, c + size // 2]:
                continue
            sub = means[r + block // 2:r + size:block, c + block // 2:c + size:block]
            cands.append((float(sub.std() / max(sub.mean(), 1e-30)), r, c))
    boxes: list[Box] = []
    for _, r, c in sorted(cands):
        if all(r >= b[1] or r + size <= b[0] or c >= b[3] or c + size <= b[2] for b in boxes):
            boxes.append((r, r + size, c, c + size))
        if len(boxes) == n:
            break
    return boxes


def _trim_nodata(z: np.ndarray) -> np.ndarray:
    """Drop border rows and columns that are mostly exact zeros (no-data margins of resampled SLCs): they are not
    speckle and would distort ENL and the ratio image."""
    valid = z != 0
    rows = np.flatnonzero(valid.mean(axis=1) > 0.5)
    cols = np.flatnonzero(valid.mean(axis=0) > 0.5)
    if len(rows) < 32 or len(cols) < 32:
        return z
    return z[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _amplitude(x: Any) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return np.abs(a).astype(np.float32)


def simulated_probe(seed: int = 7, names: tuple[str, ...] = TEST_IMAGES,
                    bandwidth: tuple[float, float] = BANDWIDTH, doppler: tuple[float, float] = DOPPLER) -> ProbeSet:
    """Held-out pictures under simulated correlated speckle, with their clean amplitude."""
    xs, ys, boxes = [], [], []
    for i, name in enumerate(names):
        r = clean_reflectivity(name)
        z, expected = simulate_slc(r, seed=seed * 1000 + i, bandwidth=bandwidth, doppler=doppler)
        xs.append(centre_spectrum(z))
        ys.append(np.sqrt(expected)[None])
        boxes.append(homogeneous_boxes(expected, n=2))
    return ProbeSet(x_train=[], y_train=[], x_test=xs, y_test=ys, task="denoising",
                    source=f"simulated speckle (seed {seed}) over pictures of the installed scikit-image",
                    description=f"scikit-image pictures {', '.join(names)} (not in the default corpus) under simulated "
                                f"correlated complex speckle; PSNR/SSIM of the amplitude in [0, {AMPLITUDE_SCALE:g}]",
                    meta={"speckle": True, "data_range": AMPLITUDE_SCALE, "uniform_regions": boxes,
                          "to_display": _amplitude, "names": list(names), "baselines": dict(BASELINES)})


def real_probe(path: str | Path, probe_size: int = 512, probe_scenes: int = 4, polarisation: Any = None,
               polarisation_names: Any = None) -> ProbeSet:
    """Central crops of the SLC images under ``path`` (the ``polarisation`` channel(s) of stacks, see
    :func:`~modalities.sar.readers.find_slc_images`); scored by ENL and the ratio image (no clean reference)."""
    sources = find_slc_images(path, polarisation, polarisation_names)[0][:probe_scenes]
    xs, boxes, names, small = [], [], [], []
    for f in sources:
        scene = f.open()
        h, w = scene.shape
        r0, c0 = max(0, (h - probe_size) // 2), max(0, (w - probe_size) // 2)
        z = _trim_nodata(scene.window(r0, min(h, r0 + probe_size), c0, min(w, c0 + probe_size)))
        z = centre_spectrum(z)
        xs.append(z)
        found = homogeneous_boxes(np.abs(z.astype(np.complex128)) ** 2)
        side = found[0][1] - found[0][0] if found else 0
        if side < ENL_BOX_SIZES[0]:
            small.append(f"{f.label} {z.shape[0]} x {z.shape[1]}: " + (f"{side} x {side}" if side else "none"))
        boxes.append(found)
        names.append(f.label)
    if small:
        big = ENL_BOX_SIZES[0]
        notice(f"sar: real SLC probe: no {big} x {big} ENL box fits {len(small)} of {len(xs)} image(s), smaller boxes "
               f"used ({'; '.join(small[:2])}{'; ...' if len(small) > 2 else ''})")
    return ProbeSet(x_train=[], y_train=[], x_test=xs, y_test=[None] * len(xs), task="denoising",
                    source=f"central crops of {len(xs)} SLC image(s) of {path}",
                    description="real SLC crops without ground truth: ENL in automatically found homogeneous boxes "
                                "and ratio-image statistics (ideal: ENL high, ratio mean 1, ratio variance 1)",
                    meta={"speckle": True, "uniform_regions": boxes, "to_display": _amplitude, "names": names,
                          "baselines": dict(BASELINES)})


def _is_simulated(path: Path) -> bool:
    meta = path / "corpus.json" if path.is_dir() else path.parent / "corpus.json"
    try:
        return str(json.loads(meta.read_text()).get("generator", "")).startswith("modalities.sar.simulate")
    except (OSError, ValueError):
        return False


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None) -> dict[str, ProbeSet]:
    """The simulated-speckle probe for the simulated default; the real-SLC probe for real data."""
    if data_path is None:
        return {"simulated speckle": simulated_probe()}
    data_path = Path(data_path)
    if _is_simulated(data_path):
        return {"simulated speckle": simulated_probe()}
    opts = SarOptions.of(data_cfg)
    return {"real SLC": real_probe(data_path, opts.probe_size, opts.probe_scenes, opts.polarisation,
                                   opts.polarisation_names)}
