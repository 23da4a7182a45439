"""Training patches of SLC scenes for MERLIN, and the sensor statistics estimated from them.

Every scene is opened lazily (:func:`~modalities.sar.readers.open_slc`); its Doppler centroid and spectral
symmetry gains (:mod:`modalities.sar.doppler`) are estimated once on a central window of at most
``stats_window`` pixels a side. A sample is a ``patch x patch`` crop at a position drawn from the sample's seed,
read from the file, multiplied by the scene's phase ramp (centring), symmetrised, randomly flipped, and returned as
``{"image": float32[2, p, p]}`` (real, imaginary). The simulator's scenes also carry ``"clean"``: float32[1, p, p],
the expected amplitude, which only the monitor reads.

A polarisation stack is one scene per selected channel (``polarisation``: an index, a name or ``all``;
:func:`~modalities.sar.readers.find_slc_images`); the decision is in :attr:`SLCPatches.decision`.

Split: with several scenes (files; the channels of a stack are one scene), the last ``val_fraction`` of them (at
least one) are held out; a single scene (every selected channel of it) is split by rows (the bottom
``val_fraction`` of its rows, when that holds a patch) or else monitored on fixed positions of the same scene,
which is then said in :attr:`SLCPatches.note`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError
from modalities.sar.doppler import Gains, centre_spectrum, doppler_centroid, symmetrise, symmetry_gains
from modalities.sar.readers import SLCFile, SLCSource, find_slc_images

__all__ = ["SLCPatches", "SceneInfo", "sensor_statistics"]


@dataclass
class SceneInfo:
    """One scene's usable rows for this split, Doppler centroid and symmetry gains (``source``: its file and, for
    a polarisation stack, its channel)."""

    path: Path
    rows: tuple[int, int]
    cols: tuple[int, int]
    f_az: float
    f_rg: float
    gains: Gains
    clean: Path | None
    source: SLCSource | None = None

    def open(self) -> SLCFile:
        return (self.source or SLCSource(self.path)).open()


def _central_window(scene: SLCFile, size: int) -> np.ndarray:
    h, w = scene.shape
    r0, c0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return scene.window(r0, min(h, r0 + size), c0, min(w, c0 + size))


def _scene_info(source: SLCSource, rows: tuple[int, int], stats_window: int) -> SceneInfo:
    scene = source.open()
    z = _central_window(scene, stats_window)
    f_az, f_rg = doppler_centroid(z)
    gains = symmetry_gains(centre_spectrum(z, f_az, f_rg))
    path = source.path
    clean = path.with_name(path.stem + "_clean.npy")
    clean = clean if clean.is_file() and source.band is None else None
    return SceneInfo(path, rows, (0, scene.shape[1]), f_az, f_rg, gains, clean, source)


class SLCPatches(Dataset):
    """Doppler-centred, symmetrised SLC patches keyed by ``(index, seed)`` (see the module docstring).

    Args:
        path: an SLC file or a folder of them.
        split: ``"train"`` or ``"val"``.
        patch: patch side (a multiple of 32; reduced to fit small scenes).
        val_fraction: share of scenes (or of a single scene's rows) held out.
        patches_per_scene: items per scene and epoch (0: one per ``patch x patch`` area of the scene).
        stats_window: side of the central window used for Doppler and gain estimates.
        flips: random horizontal / vertical flips (training only).
        polarisation: the channel(s) of polarisation stacks: an index, a name (``"HV"``) or ``"all"`` (each
            channel a separate scene); None refuses stacks in one line.
        polarisation_names: the channel names of the stacks (default: from the file names).
    """

    def __init__(self, path: str | Path, split: str = "train", patch: int = 256, val_fraction: float = 0.1,
                 patches_per_scene: int = 0, stats_window: int = 1024, flips: bool = True,
                 polarisation: Any = None, polarisation_names: Any = None) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        files, self.decision = find_slc_images(path, polarisation, polarisation_names)
        self.split, self.flips = split, flips and split == "train"
        self.note = ""
        shapes = [f.open().shape for f in files]
        smallest = min(min(s) for s in shapes)
        self.patch = int(min(patch, smallest // 32 * 32))
        if self.patch < 32:
            raise DataError(f"{path}: scenes of {smallest} pixels are too small for a 32-pixel patch")
        scenes: list[tuple[SLCSource, tuple[int, int]]] = []
        paths = list(dict.fromkeys(f.path for f in files))  # the channels of a stack are one scene
        if len(paths) > 1:
            n_val = max(1, int(round(val_fraction * len(paths))))
            held = set(paths[-n_val:])
            scenes = [(f, (0, s[0])) for f, s in zip(files, shapes) if (f.path in held) == (split == "val")]
        else:
            for f, (h, _) in zip(files, shapes):
                cut = int(round(h * (1.0 - val_fraction)))
                if h - cut >= self.patch and cut >= self.patch:
                    scenes.append((f, (0, cut) if split == "train" else (cut, h)))
                else:
                    scenes.append((f, (0, h)))
                    if split == "val":
                        self.note = "single small scene: the held-out batch uses fixed positions of the training scene"
        self.scenes = [_scene_info(f, rows, stats_window) for f, rows in scenes]
        per = []
        for s in self.scenes:
            area = (s.rows[1] - s.rows[0]) * (s.cols[1] - s.cols[0])
            per.append(int(patches_per_scene) or max(1, area // (self.patch * self.patch)))
        self.offsets = np.cumsum([0] + per)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def scene_of(self, index: int) -> SceneInfo:
        return self.scenes[int(np.searchsorted(self.offsets, index, side="right") - 1)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (int(key), int(key))
        s = self.scene_of(index)
        p = self.patch
        if self.split == "train":
            rng = np.random.default_rng(seed)
            r0 = int(rng.integers(s.rows[0], s.rows[1] - p + 1))
            c0 = int(rng.integers(s.cols[0], s.cols[1] - p + 1))
            flip = rng.integers(0, 2, size=2) if self.flips else (0, 0)
        else:  # fixed positions spread over the scene
            k = index - int(self.offsets[self.scenes.index(s)])
            n = int(self.offsets[self.scenes.index(s) + 1] - self.offsets[self.scenes.index(s)])
            frac = (k + 0.5) / n
            r0 = s.rows[0] + int(frac * (s.rows[1] - s.rows[0] - p))
            c0 = s.cols[0] + int(((k * 0.618034) % 1.0) * (s.cols[1] - s.cols[0] - p))
            flip = (0, 0)
        z = s.open().window(r0, r0 + p, c0, c0 + p)
        z = symmetrise(centre_spectrum(z, s.f_az, s.f_rg) * _phase_at(r0, c0, s.f_az, s.f_rg), s.gains)
        parts = np.stack([z.real, z.imag]).astype(np.float32)
        sample: dict[str, Any] = {}
        if s.clean is not None:
            clean = np.sqrt(np.load(s.clean, mmap_mode="r")[r0:r0 + p, c0:c0 + p].astype(np.float32))[None]
            sample["clean"] = clean
        if flip[0]:
            parts = parts[:, ::-1]
            sample = {k: v[:, ::-1] for k, v in sample.items()}
        if flip[1]:
            parts = parts[:, :, ::-1]
            sample = {k: v[:, :, ::-1] for k, v in sample.items()}
        sample = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sample.items()}
        sample["image"] = torch.from_numpy(np.ascontiguousarray(parts))
        return sample

    def sensor_statistics(self, max_pixels: int = 4_000_000) -> dict[str, float]:
        """The sensor's normalisation from these scenes (see :func:`sensor_statistics`)."""
        return sensor_statistics([s.open() for s in self.scenes], max_pixels)


def _phase_at(r0: int, c0: int, f_az: float, f_rg: float) -> complex:
    """The scene-wide ramp's constant phase at a window's origin (a window centred on its own origin differs from
    the scene's centred window by this factor; it does not change the spectrum's symmetry)."""
    return complex(np.exp(-2j * np.pi * (f_az * r0 + f_rg * c0)))


def sensor_statistics(scenes: list[SLCFile], max_pixels: int = 4_000_000,
                      quantiles: tuple[float, float] = (0.001, 0.9999)) -> dict[str, float]:
    """``eps``, ``log_min`` (m) and ``log_max`` (M) of the MERLIN normalisation for a sensor.

    ``eps = 1e-6 * mean intensity`` (only keeps ``log`` finite at exact zeros, as 1e-3 does for the amplitudes of the
    paper's TerraSAR-X data), and ``m``, ``M`` the 0.1 % and 99.99 % quantiles of ``0.5 log(a^2 + eps)`` over the
    real and imaginary parts ``a`` of up to ``max_pixels`` pixels (central windows of each scene). The paper uses
    the global min and max; quantiles keep one outlier from setting the scale.
    """
    if not scenes:
        raise DataError("no scenes to estimate the sensor statistics from")
    side = max(32, int(np.sqrt(max_pixels / len(scenes))))
    parts = []
    for scene in scenes:
        z = _central_window(scene, side)
        parts.append(np.concatenate([z.real.ravel(), z.imag.ravel()]).astype(np.float64))
    a = np.concatenate(parts)
    eps = 1e-6 * float(np.mean(a * a) * 2.0)
    if not eps > 0:
        raise DataError(f"{scenes[0].path}: the scenes are all zeros")
    lo, hi = np.quantile(0.5 * np.log(a * a + eps), quantiles)
    return {"log_min": float(lo), "log_max": float(hi), "eps": eps}
