"""The typed ``data`` section of SAR (:class:`SarOptions`): every data option the SAR code reads, its one default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modalities.options import DataOptions

__all__ = ["SarOptions"]


@dataclass(frozen=True)
class SarOptions(DataOptions):
    """SAR data options (modalities/sar/recipe.yaml sets only what differs). ``path`` (base class): an SLC file or a
    folder of them (.npy [H, W, 2] / complex, complex TIFF, Sentinel-1 SAFE)."""

    patch: int = 256  # training patch side, a multiple of 32; reduced to fit small scenes
    val_fraction: float = 0.1  # scenes (or a single scene's bottom rows) held out for the monitor
    patches_per_scene: int = 0  # items per scene and epoch; 0 = scene area / patch area
    stats_window: int = 1024  # central window for the Doppler and symmetry estimates
    # stacks [P, H, W, 2] / complex [P, H, W]: a channel index, a name (HH, HV, VH, VV) or all (each channel a
    # separate image); None refuses a stack, listing its channels
    polarisation: int | str | None = None
    polarisation_names: list[str] | None = None  # the stacks' channel names, e.g. [HH, HV, VH, VV]; None: file name
    probe_size: int = 512  # real-data probe: central crops of this size
    probe_scenes: int = 4  # real-data probe: at most this many scenes
    # evaluate --reference: a real-valued reference image holds the amplitude or the intensity (the simulator's
    # *_clean.npy files are always intensity)
    reference_values: Literal["amplitude", "intensity"] = "amplitude"
