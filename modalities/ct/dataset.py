"""CT slices (or patches of them) as image samples, with optional simulated low dose.

A sample is ``{"image": float32[1, H, W], "spacing": float32[2] (row, column mm), "meta": {...}}`` in the data's
units (``units``: ``"hu"``, or ``"unit_interval"`` for min-max normalised data; :mod:`modalities.ct.units`) and, when
the low dose is simulated (``dose_i0``, HU data only), ``"clean"`` float32[1, H, W] in HU (the same slice
reconstructed from the noise-free sinogram). ``meta`` holds ``id`` (slice, dose and crop: identical ids are
identical images), ``file``, ``slice``, ``dose_i0`` (0 for real data), ``row0``/``col0`` of the crop,
``slice_spacing`` (mm) and ``units``.

Items are (slice, dose) pairs. ``patch`` = None gives whole slices (all of the same size); an integer gives
patch x patch crops, random in the training split (from the item's seed) and central otherwise; a slice smaller than
the patch is padded with air (-1024 HU, or 0 in the unit interval). The validation split holds the last
``val_fraction`` of the slices (at least one); with a single slice both splits use it.

The dataset tells the objectives its units: ``units`` and :meth:`CTSlices.hu_to_data` (a HU value or scale in the
data's units), so that the denoisers' internal scale and the PSNR monitor's window follow the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError, cache_root, file_digest
from modalities.ct.lowdose import cached_low_dose
from modalities.ct.units import check_units, hu_to_units
from modalities.ct.volumes import MIN_SIZE, SliceRef, read_slice

__all__ = ["CTSlices", "default_lowdose_cache"]

AIR_HU = -1024.0


def default_lowdose_cache() -> Path:
    """``cache_root()/ct/lowdose``: ``$MODALITIES_CACHE/ct/lowdose`` or ``~/.cache/modalities/ct/lowdose``."""
    return cache_root() / "ct" / "lowdose"


class CTSlices(Dataset):
    """Args:
        refs: slices from :func:`~modalities.ct.volumes.index_ct`.
        split: ``"train"`` or ``"val"``.
        patch: crop side in pixels, or None for whole slices.
        dose_i0: incident photons per detector bin of the simulated low dose (one value or several: every slice
            at every dose), or None to use the images as they are (real low-dose data, no ``"clean"``).
        val_fraction: share of the slices held out for validation.
        n_angles, sigma_e, seed: of the low-dose simulation (:mod:`modalities.ct.lowdose`).
        cache_dir: where simulated slices are kept (default :func:`default_lowdose_cache`).
        units: ``"hu"`` or ``"unit_interval"``: the units of the slices as read (resolved from ``data.units`` by
            :func:`modalities.ct.units.resolve_units`; this class does not detect them).
    """

    def __init__(self, refs: Sequence[SliceRef], split: str = "train", patch: int | None = None,
                 dose_i0: float | Sequence[float] | None = None, val_fraction: float = 0.25, n_angles: int = 360,
                 sigma_e: float = 10.0, seed: int = 0, cache_dir: str | Path | None = None, units: str = "hu") -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        units = check_units(units)
        if units == "auto":
            raise ValueError("CTSlices: units must be resolved ('hu' or 'unit_interval'); see modalities.ct.units")
        self.units = units
        refs = list(refs)
        if not refs:
            raise DataError("CT dataset: no slices")
        if patch is not None and int(patch) < MIN_SIZE:
            raise DataError(f"data.patch: must be >= {MIN_SIZE} pixels, got {patch}")
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"data.val_fraction: must be in [0, 1), got {val_fraction}")
        n_val = max(1, int(round(len(refs) * val_fraction))) if len(refs) > 1 and val_fraction > 0 else 0
        if n_val:
            refs = refs[len(refs) - n_val:] if split == "val" else refs[:len(refs) - n_val]
        self.refs, self.split = refs, split
        self.patch = int(patch) if patch is not None else None
        if self.patch is None and len({(r.rows, r.cols) for r in refs}) > 1:
            sizes = sorted({f"{r.rows}x{r.cols}" for r in refs})
            raise DataError(f"data.patch: slices have different sizes ({', '.join(sizes)}); set data.patch to train "
                            "on crops, or select slices of one size with data.slices")
        doses = [] if dose_i0 is None else ([float(dose_i0)] if np.isscalar(dose_i0) else [float(d) for d in dose_i0])
        if doses and units != "hu":
            raise DataError(f"data.dose_i0: the low-dose simulation needs Hounsfield units, but {refs[0].path} is "
                            f"data.units={units}; drop data.dose_i0 (train on the data as it is) or give HU data")
        self.doses = doses
        self.air = AIR_HU if units == "hu" else float(hu_to_units(AIR_HU, units))
        self.items = [(i, d) for i in range(len(refs)) for d in (doses or [0.0])]
        self.files: dict[int, tuple[Path, dict[float, Path]]] = {}
        if doses:
            cache = Path(cache_dir) if cache_dir else default_lowdose_cache()
            for i, r in enumerate(refs):
                key = f"{file_digest(r.path)}|{r.index}"  # content, not path: a copied file reuses the cache
                self.files[i] = cached_low_dose(key, lambda r=r: read_slice(r), r.spacing[1], doses, cache, seed,
                                                n_angles, sigma_e)

    def __len__(self) -> int:
        return len(self.items)

    def hu_to_data(self, hu: float) -> float:
        """A HU value in the units of this dataset's images (itself for HU; for the unit interval through
        :data:`modalities.ct.units.UNIT_INTERVAL_HU`)."""
        return float(hu_to_units(float(hu), self.units))

    def _images(self, i: int, dose: float) -> tuple[np.ndarray, np.ndarray | None]:
        if not dose:
            return read_slice(self.refs[i]), None
        clean_path, noisy = self.files[i]
        return np.load(noisy[dose], mmap_mode="r"), np.load(clean_path, mmap_mode="r")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (int(key), 0)
        i, dose = self.items[index]
        ref = self.refs[i]
        image, clean = self._images(i, dose)
        row0 = col0 = 0
        if self.patch is not None:
            p = self.patch
            h, w = image.shape
            if self.split == "train":
                rng = np.random.default_rng(seed)
                row0, col0 = int(rng.integers(0, max(1, h - p + 1))), int(rng.integers(0, max(1, w - p + 1)))
            else:
                row0, col0 = max(0, (h - p) // 2), max(0, (w - p) // 2)
            image = _crop(image, row0, col0, p, self.air)
            clean = None if clean is None else _crop(clean, row0, col0, p, self.air)
        sample: dict[str, Any] = {
            "image": torch.from_numpy(np.array(image, np.float32, copy=True))[None],
            "spacing": torch.tensor(ref.spacing, dtype=torch.float32),
            "meta": {"id": f"{ref.id}:{dose:g}:{row0}:{col0}", "file": ref.path, "slice": ref.index,
                     "dose_i0": float(dose), "row0": row0, "col0": col0,
                     "slice_spacing": float(np.nan_to_num(ref.slice_spacing, nan=0.0)), "units": self.units},
        }
        if clean is not None:
            sample["clean"] = torch.from_numpy(np.array(clean, np.float32, copy=True))[None]
        return sample


def _crop(a: np.ndarray, row0: int, col0: int, p: int, air: float = AIR_HU) -> np.ndarray:
    out = np.full((p, p), air, np.float32)
    block = a[row0:row0 + p, col0:col0 + p]
    out[:block.shape[0], :block.shape[1]] = block
    return out
