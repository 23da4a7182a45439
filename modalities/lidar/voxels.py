"""Point-cloud range / voxel presets, cropping, voxelisation and the Pointcept point dict.

Presets (OpenPCDet's dataset configs; ranges ``[x_min, y_min, z_min, x_max, y_max, z_max]`` in metres):

=========  ===============================  ====================  =======================
preset     range                            voxel (x, y, z)       sparse shape (z, y, x)
=========  ===============================  ====================  =======================
kitti      [0, -40, -3, 70.4, 40, 1]        [0.05, 0.05, 0.1]     [41, 1600, 1408]
nuscenes   [-51.2, -51.2, -5, 51.2, 51.2, 3] [0.1, 0.1, 0.2]      [41, 1024, 1024]
waymo      [-75.2, -75.2, -2, 75.2, 75.2, 4] [0.1, 0.1, 0.15]     [41, 1504, 1504]
=========  ===============================  ====================  =======================

The sparse shape is ``round((max - min) / voxel)`` per axis plus one cell in z (SECOND's convention). The
features of a point are ``[x / r, y / r, z / r_z, intensity]`` with ``r`` the half-width of the range in x, y
and ``r_z`` its half-height, so every preset feeds the encoder numbers of order one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from modalities.base import DataError

__all__ = ["PRESETS", "VoxelGrid", "crop_to_range", "make_grid", "point_dict", "point_features",
           "voxelize"]


@dataclass(frozen=True)
class VoxelGrid:
    """A point-cloud range and voxel size (metres)."""

    point_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Cells along (x, y, z)."""
        lo, hi = np.asarray(self.point_range[:3]), np.asarray(self.point_range[3:])
        return tuple(int(v) for v in np.round((hi - lo) / np.asarray(self.voxel_size)))

    @property
    def sparse_shape(self) -> tuple[int, int, int]:
        """SECOND's (z, y, x) sparse shape: the grid size reversed, plus one cell in z."""
        gx, gy, gz = self.grid_size
        return gz + 1, gy, gx


PRESETS: dict[str, VoxelGrid] = {
    "kitti": VoxelGrid((0.0, -40.0, -3.0, 70.4, 40.0, 1.0), (0.05, 0.05, 0.1)),
    "nuscenes": VoxelGrid((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.1, 0.1, 0.2)),
    "waymo": VoxelGrid((-75.2, -75.2, -2.0, 75.2, 75.2, 4.0), (0.1, 0.1, 0.15)),
}


def make_grid(preset: str, point_range: Sequence[float] | None = None,
              voxel_size: float | Sequence[float] | None = None) -> VoxelGrid:
    """The ``preset``'s grid (kitti / nuscenes / waymo) with ``point_range`` / ``voxel_size`` (one size or three)
    overriding its own; a one-line :class:`DataError` naming the ``data`` option that is wrong."""
    if preset not in PRESETS:
        raise DataError(f"data.preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    pr = tuple(float(v) for v in (point_range or base.point_range))
    vs = voxel_size or base.voxel_size
    vs = (float(vs),) * 3 if isinstance(vs, (int, float)) else tuple(float(v) for v in vs)
    if len(pr) != 6 or not all(pr[i] < pr[i + 3] for i in range(3)):
        raise DataError(f"data.point_range: needs [x_min, y_min, z_min, x_max, y_max, z_max] with min < max, got {pr}")
    if len(vs) != 3 or min(vs) <= 0:
        raise DataError(f"data.voxel_size: needs 3 positive sizes (x, y, z), got {vs}")
    return VoxelGrid(pr, vs)  # type: ignore[arg-type]


def crop_to_range(xyz: np.ndarray | torch.Tensor, grid: VoxelGrid) -> np.ndarray | torch.Tensor:
    """Boolean mask of the points inside the half-open range ``[min, max)``."""
    lo = grid.point_range[:3]
    hi = grid.point_range[3:]
    m = (xyz[:, 0] >= lo[0]) & (xyz[:, 0] < hi[0]) & (xyz[:, 1] >= lo[1]) & (xyz[:, 1] < hi[1])
    return m & (xyz[:, 2] >= lo[2]) & (xyz[:, 2] < hi[2])


def voxelize(xyz: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    """Voxel coordinates int32[N, 3] (x, y, z) of points already cropped to the range: ``floor((p - min) / v)``."""
    lo = torch.tensor(grid.point_range[:3], dtype=xyz.dtype, device=xyz.device)
    vs = torch.tensor(grid.voxel_size, dtype=xyz.dtype, device=xyz.device)
    g = torch.floor((xyz - lo) / vs).to(torch.int32)
    top = torch.tensor(grid.grid_size, dtype=torch.int32, device=xyz.device) - 1
    return torch.minimum(g.clamp_min(0), top).contiguous()  # float rounding at the max edge stays inside


def point_features(xyz: torch.Tensor, intensity: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    """``[x / r, y / r, z / r_z, intensity]`` float32[N, 4] about the range centre (see the module docstring)."""
    pr = torch.tensor(grid.point_range, dtype=xyz.dtype, device=xyz.device)
    centre = (pr[:3] + pr[3:]) / 2
    half = (pr[3:] - pr[:3]) / 2
    return torch.cat([(xyz - centre) / half, intensity.reshape(-1, 1).to(xyz.dtype)], 1).float()


def point_dict(scans: Sequence[tuple[torch.Tensor, torch.Tensor]], grid: VoxelGrid) -> dict[str, torch.Tensor]:
    """Pointcept batch of scans ``[(xyz [N_i, 3], intensity [N_i])]`` already cropped to the range:
    ``{"coord", "grid_coord" int32, "feat" [N, 4], "offset" int64[B]}``."""
    coords = [s[0] for s in scans]
    if not coords or any(len(c) == 0 for c in coords):
        raise DataError("lidar: a sweep has no points inside data.point_range")
    xyz = torch.cat(coords).float()
    inten = torch.cat([s[1] for s in scans]).float()
    return {"coord": xyz, "grid_coord": voxelize(xyz, grid), "feat": point_features(xyz, inten, grid),
            "offset": torch.cumsum(torch.tensor([len(c) for c in coords], dtype=torch.int64), 0)}
