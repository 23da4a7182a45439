"""The typed ``data`` section of the LiDAR modality: every data option its code reads, its type, its one default
(the value real runs use; the recipe's ``data`` section sets only what differs) and what it means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from modalities.lidar.voxels import VoxelGrid, make_grid
from modalities.options import DataOptions

__all__ = ["LidarOptions", "grid_from_config"]


@dataclass(frozen=True)
class LidarOptions(DataOptions):
    """LiDAR data options. ``path`` (--data): SemanticKITTI/KITTI's root (``sequences/SS/velodyne``) or any folder of
    sweeps. ``probe_data`` (--probe-data; formerly probe_path): a labelled SemanticKITTI folder, then the only
    per-point probe of the report; null: simulated streets (seed 7, never the training streets), plus the labelled
    frames of a real --data (:mod:`modalities.lidar.probes`).

    ``preset``, ``point_range`` and ``voxel_size`` are checked together when the options are built (one-line
    :class:`~modalities.base.DataError`); :attr:`grid` is the voxel grid they give.
    """

    # point-cloud range and voxels (modalities/lidar/voxels.py)
    preset: str = "kitti"  # kitti | nuscenes | waymo: point-cloud range and voxel size (OpenPCDet)
    point_range: tuple[float, float, float, float, float, float] | None = None  # [x_min, y_min, z_min, x_max,
    #   y_max, z_max] (m); overrides the preset's
    voxel_size: float | tuple[float, float, float] | None = None  # [x, y, z] or one size for all three (m);
    #   overrides the preset's
    max_points: int = 0  # random subsample per sweep; 0 keeps every point in range
    # pretraining pairs
    val_fraction: float = 0.2  # last pairs of each sequence held out for monitoring
    # file conventions (resolved from the files when auto; the run's config.yaml holds the resolved values)
    label_format: Literal["auto", "raw", "train_ids"] = "auto"  # .label semantic ids: raw SemanticKITTI ids
    #   (10 car, 40 road, ...) or training ids 0..19 (0 unlabelled, 1 car, ...); auto decides from the values
    point_columns: Literal["auto", 3, 4] = "auto"  # float32 columns of plain .bin sweeps; 3 = x, y, z without
    #   intensity (set to 0)
    # fine-tuning on per-point labels (labels: points)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test share of each sequence's
    #   frames, in time order (at least one frame each)
    label_unit: str = "frames"  # frames | points: what label_fraction counts (whole frames, or labelled points of
    #   every training frame, stratified per class); checked by LabelledFrames

    def __post_init__(self) -> None:
        make_grid(self.preset, self.point_range, self.voxel_size)  # an unknown preset or a bad range / voxel
        # size fails when the options are built, before any data is read

    @property
    def grid(self) -> VoxelGrid:
        """The preset's range and voxel size with ``point_range`` / ``voxel_size`` overriding them."""
        return make_grid(self.preset, self.point_range, self.voxel_size)


def grid_from_config(cfg: Mapping[str, Any]) -> VoxelGrid:
    """The grid of the data options ``cfg`` (a :class:`LidarOptions` or a mapping of them): ``data.preset`` with
    optional ``data.point_range`` / ``data.voxel_size`` overrides."""
    return LidarOptions.of(cfg).grid
