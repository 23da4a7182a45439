"""The units of CT images: Hounsfield units or the unit interval, declared (``data.units``) or detected.

``data.units`` is one of

- ``hu``: Hounsfield units (air -1000, water 0, bone ~1000+); DICOM slices are rescaled to HU by their
  RescaleSlope / RescaleIntercept.
- ``unit_interval``: intensities in [0, 1], e.g. a volume min-max normalised before it was shared (the way the
  Filter2Noise authors ship their sample). The original HU range is unknown; where a scale in HU is needed (the
  denoisers' internal scale, the PSNR monitor's window) the unit interval is taken to span the 12-bit CT range
  :data:`UNIT_INTERVAL_HU` = [-1024, 3072] HU, so scales keep their *relative* size (a 400 HU window is ~0.1).
- ``auto`` (default): DICOM files that carry RescaleSlope / RescaleIntercept are HU; otherwise the value range of
  the pixels decides: values within [0, 1] are ``unit_interval``, values reaching below -500 (air) are ``hu``, and
  anything else (e.g. [0, 255] or [0, 4095] without rescale tags, z-scores, a crop without air) is refused with
  one line that names the file and the option. The decision is printed in one line.

The low-dose simulator needs HU: ``data.dose_i0`` on unit-interval data is refused.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from modalities.base import DataError
from modalities.options import OptionError

__all__ = ["UNITS", "UNIT_INTERVAL_HU", "UnitsError", "check_units", "detect_units", "hu_to_units", "resolve_units"]

UNITS = ("auto", "hu", "unit_interval")
UNIT_INTERVAL_HU = (-1024.0, 3072.0)  # the HU span a unit-interval image is taken to cover, for scales only
_UNIT_TOL = 0.01  # [0, 1] up to rounding / interpolation overshoot
_AIR_BELOW = -500.0  # HU data of a body slice reaches air (-1000) or outside-FOV padding (-1024 .. -3024)
_HU_LIMITS = (-32768.0, 32767.0)  # int16 storage, extended CT scale included
_MAX_FILES = 8  # auto looks at up to this many files (evenly spread) of a folder
_SAMPLE_SLICES = 3  # and at the first, middle and last slice of each volume


def hu_to_units(value: float | np.ndarray, units: str) -> float | np.ndarray:
    """A HU value (or array) in ``units``: itself for ``hu``, mapped through :data:`UNIT_INTERVAL_HU` for
    ``unit_interval``."""
    if units == "hu":
        return value
    if units == "unit_interval":
        lo, hi = UNIT_INTERVAL_HU
        return (value - lo) / (hi - lo)
    raise ValueError(f"units must be 'hu' or 'unit_interval', got {units!r}")


class UnitsError(DataError, OptionError):
    """``data.units`` outside :data:`UNITS`: a data error (the dataset builders) and an option error (the config)."""


def check_units(units: object) -> str:
    """``units`` lower-cased (None: auto), or :class:`UnitsError` in one line when it is not one of :data:`UNITS`."""
    u = "auto" if units is None else str(units).strip().lower()
    if u not in UNITS:
        raise UnitsError(f"data.units: must be one of {', '.join(UNITS)}, got {units!r}")
    return u


def _from_values(path: str, lo: float, hi: float) -> tuple[str, str]:
    """(units, reason) from the value range of a file's pixels, or DataError when ambiguous."""
    rng = f"[{lo:.3f}, {hi:.3f}]" if max(abs(lo), abs(hi)) < 100 else f"[{lo:.0f}, {hi:.0f}]"
    if -_UNIT_TOL <= lo and hi <= 1.0 + _UNIT_TOL:
        return "unit_interval", f"values in {rng}"
    if _HU_LIMITS[0] <= lo <= _AIR_BELOW and hi <= _HU_LIMITS[1]:
        return "hu", f"values in {rng}"
    raise DataError(f"{path}: values in {rng} are neither Hounsfield units (air near -1000) nor min-max normalised "
                    f"[0, 1]; set data.units=hu or data.units=unit_interval")


def detect_units(refs: Sequence, read: Callable[..., np.ndarray]) -> tuple[str, str]:
    """(units, one-line decision) for slices ``refs`` (SliceRef with ``meta["rescale"]`` for DICOM) whose pixels
    ``read(ref)`` returns. Raises :class:`DataError` (one line naming the file and ``data.units``) when the values
    are ambiguous or files disagree."""
    by_file: dict[str, list] = {}
    for r in refs:
        by_file.setdefault(r.path, []).append(r)
    files = list(by_file)
    tagged = [f for f in files if by_file[f][0].meta.get("rescale")]
    untagged = [f for f in files if f not in tagged]
    decided: list[tuple[str, str, str]] = []  # (file, units, reason)
    if tagged:
        decided.append((tagged[0], "hu", "DICOM RescaleSlope/RescaleIntercept"))
    if untagged:
        pick = np.unique(np.linspace(0, len(untagged) - 1, min(_MAX_FILES, len(untagged))).round().astype(int))
        for i in pick:
            f = untagged[int(i)]
            slices = by_file[f]
            idx = np.unique(np.linspace(0, len(slices) - 1, min(_SAMPLE_SLICES, len(slices))).round().astype(int))
            lo, hi = np.inf, -np.inf
            for k in idx:
                a = np.asarray(read(slices[int(k)]), np.float64)
                a = a[np.isfinite(a)]
                if a.size:
                    lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
            if not np.isfinite(lo):
                raise DataError(f"{f}: no finite pixel values; cannot tell its units (data.units)")
            units, reason = _from_values(f, lo, hi)
            decided.append((f, units, reason))
    kinds = {u for _, u, _ in decided}
    if len(kinds) > 1:
        a = next(d for d in decided if d[1] == "hu")
        b = next(d for d in decided if d[1] == "unit_interval")
        raise DataError(f"{b[0]}: {b[2]} (unit_interval) but {a[0]}: {a[2]} (hu); one run needs one convention: "
                        f"select files of one kind, or set data.units")
    f, units, reason = decided[0]
    other = "unit_interval" if units == "hu" else "hu"
    more = f" (and {len(files) - 1} more file{'s' if len(files) > 2 else ''})" if len(files) > 1 else ""
    return units, f"ct: {f}{more}: {reason} -> data.units={units} (set data.units={other} to override)"


def resolve_units(refs: Sequence, requested: object, read: Callable[..., np.ndarray]) -> tuple[str, str | None]:
    """(``hu`` | ``unit_interval``, the decision line or None when declared) for ``data.units`` = ``requested``."""
    u = check_units(requested)
    if u != "auto":
        return u, None
    return detect_units(refs, read)
