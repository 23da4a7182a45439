"""The typed ``data`` section of the scenes modality: every data option its code reads, its type, its one default
(the value real runs use; the recipe's ``data`` section sets only what differs) and what it means."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from modalities.base import DataError
from modalities.options import DataOptions, OptionError, coerce
from modalities.scenes.points import ViewAugment

__all__ = ["OUTDOOR_GRID", "PROBES", "ScenesOptions"]

PROBES = ("rooms", "corpus", "sensaturban", "semantickitti")  # the segmentation probes (modalities/scenes/probes.py)
OUTDOOR_GRID = {"sensaturban": 0.1, "semantickitti": 0.2}  # metres; 2 cm indoor voxels would be ~10^6 per frame


@dataclass(frozen=True)
class ScenesOptions(DataOptions):
    """Scene data options. ``path`` (--data): a scene (PLY / Pointcept folder / S3DIS room / SensatUrban .bin /
    SemanticKITTI velodyne .bin) or a folder searched recursively.

    Segmentation probes of the report (:mod:`modalities.scenes.probes`): ``probe_data`` (--probe-data PATH;
    formerly probe_root) null: simulated rooms with the simulator's labels (seed 7001, never the training rooms),
    plus the labelled scenes of a real --data. A folder: the real-data probes on it only:
    ``sensaturban/<crop>.bin`` + ``.label`` and ``semantickitti/sequences/00`` frames 0-2 below it, or else its
    labelled scenes (PLY / Pointcept / S3DIS).

    ``augment`` is normalised to every option of :class:`~modalities.scenes.points.ViewAugment` (which holds their
    defaults, types and meanings) and ``probe_grid_size`` to both outdoor probes, so a partial mapping (``--set
    data.augment.max_points=5000``) changes only what it names.
    """

    grid_size: float = 0.02  # metres; 2 cm indoors. Outdoor data: 0.05-0.1 (SensatUrban), 0.1-0.2 (LiDAR)
    normal_radius: float | None = None  # neighbourhood of the normal estimate when a file has none; null = 4 voxels
    val_fraction: float = 0.1  # last scenes (sorted) held out for the label-free monitor
    repeat: int = 1  # samples per scene per epoch
    augment: dict[str, Any] = dataclasses.field(default_factory=dict)  # the two views (ViewAugment's options)
    # segmentation probes
    probes: list[str] = dataclasses.field(default_factory=lambda: list(PROBES))  # the ones that may run (those
    #   that apply, see above); a subset of rooms, corpus, sensaturban, semantickitti
    probe_grid_size: dict[str, float] = dataclasses.field(default_factory=lambda: dict(OUTDOOR_GRID))  # metres,
    #   per outdoor probe
    probe_rooms: int = 3  # simulated probe rooms (2/3 train, 1/3 test), four quadrant crops each
    probe_scenes: int = 6  # labelled scenes in the corpus probe (2/3 train, 1/3 test)
    probe_max_points: int = 20000  # points per probe scene (per crop of a simulated room)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the normalised values replace the given ones once, here
        set_(self, "augment", ViewAugment.from_config(self.augment).to_dict())
        for name in self.probes:
            if name not in PROBES:
                raise DataError(f"data.probes: unknown probe {name!r} ({', '.join(PROBES)})")
        for name in self.probe_grid_size:
            if name not in OUTDOOR_GRID:
                raise OptionError(f"data.probe_grid_size.{name}: unknown probe; known: {', '.join(OUTDOOR_GRID)}")
        set_(self, "probe_grid_size", {k: coerce(self.probe_grid_size.get(k, v), float, f"data.probe_grid_size.{k}")
                                       for k, v in OUTDOOR_GRID.items()})
