"""The typed ``data`` section of CT (:class:`CtOptions`): every data option the CT code reads, its one default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from modalities.ct.units import check_units
from modalities.options import DataOptions

__all__ = ["CtOptions"]


@dataclass(frozen=True)
class CtOptions(DataOptions):
    """CT data options (modalities/ct/recipe.yaml sets only what differs). ``path`` (base class): a DICOM file or
    folder (series sorted by position), NIfTI volumes or .npy slices."""

    # auto | hu | unit_interval ([0, 1], min-max normalised); auto: DICOM rescale tags, else the value range
    # ([0, 1] -> unit_interval, reaching air < -500 -> hu, else refused); the decision is printed
    units: Literal["auto", "hu", "unit_interval"] = "auto"
    slices: list[int] | int | None = None  # indices into the sorted slice list (None: all)
    patch: int | None = 128  # crop side in pixels; None for whole slices
    # simulate a low dose at these incident photon counts (e.g. [1.0e5, 5.0e4]); None: the data as they are
    dose_i0: list[float] | float | None = None
    n_angles: int = 360  # views of the simulated parallel-beam scan
    sigma_e: float = 10.0  # electronic noise std (counts) of the simulated scan
    noise_seed: int = 0  # seed of the simulated low-dose noise
    val_fraction: float = 0.25  # the last slices are held out
    probe_doses: tuple[float, ...] = (1.0e5, 5.0e4, 2.5e4)  # I0 of the denoising probe's simulated doses
    cache_dir: str | None = None  # where simulated slices are kept (None: $MODALITIES_CACHE/ct/lowdose)

    @classmethod
    def of(cls, values: Mapping[str, Any] | None = None, section: str = "data") -> "CtOptions":
        """As :meth:`DataOptions.of`; ``units`` is read case-insensitively (None: auto) and a value outside its
        three is refused in one line (:func:`modalities.ct.units.check_units`)."""
        if isinstance(values, Mapping) and not isinstance(values, cls) and "units" in values:
            values = {**values, "units": check_units(values["units"])}
        return super().of(values, section)
