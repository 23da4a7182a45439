"""LiDAR sweep readers: KITTI / SemanticKITTI, nuScenes, PCD / PLY (open3d), LAS / LAZ (laspy), poses and calib.

Every reader returns a :class:`Sweep` ``(xyz float32[N, 3] in metres, intensity float32[N])`` and raises a one-line
:class:`~modalities.base.DataError` naming the file for a size that is not a whole number of rows, NaN or Inf
coordinates (or, with ``drop_invalid``, drops them with a one-line warning), or an empty sweep.

Conventions (KITTI odometry, Geiger et al. CVPR 2012; SemanticKITTI, Behley et al. ICCV 2019):

- ``velodyne/*.bin``: float32 rows ``(x, y, z, reflectance)`` in the LiDAR frame (x forward, y left, z up).
- ``labels/*.label``: uint32 per point; ``label & 0xFFFF`` is the semantic id (raw ids 0..259), ``label >> 16``
  the instance id. :data:`LEARNING_MAP` maps raw ids to the 19 evaluated classes (0..18) and -1 (ignored).
- ``poses.txt``: one 3x4 row-major camera-0 pose per frame (``T_world_cam0``); ``calib.txt`` ``Tr`` is
  LiDAR -> camera 0. The LiDAR pose of frame k in frame 0's LiDAR frame is ``inv(Tr) @ inv(P_0) @ P_k @ Tr``.
- nuScenes ``.pcd.bin``: float32 rows ``(x, y, z, intensity 0..255, ring)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalities.base import DataError

__all__ = ["CLASS_NAMES", "LEARNING_MAP", "SWEEP_SUFFIXES", "Sweep", "decode_labels", "kitti_lidar_poses",
           "read_bin", "read_kitti_calib", "read_kitti_poses", "read_las", "read_o3d", "read_semantickitti_labels",
           "read_sweep"]

CLASS_NAMES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist", "road",
    "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk", "terrain", "pole",
    "traffic-sign")

#: SemanticKITTI raw semantic id -> evaluated class index (0..18) or -1 (unlabelled, outlier, other-structure,
#: other-object: ignored). Moving classes (252..259) map to their static class.
LEARNING_MAP: dict[int, int] = {
    0: -1, 1: -1, 10: 0, 11: 1, 13: 4, 15: 2, 16: 4, 18: 3, 20: 4, 30: 5, 31: 6, 32: 7, 40: 8, 44: 9, 48: 10,
    49: 11, 50: 12, 51: 13, 52: -1, 60: 8, 70: 14, 71: 15, 72: 16, 80: 17, 81: 18, 99: -1, 252: 0, 253: 6,
    254: 5, 255: 7, 256: 4, 257: 4, 258: 3, 259: 4,
}

SWEEP_SUFFIXES = (".bin", ".pcd", ".ply", ".las", ".laz")


@dataclass
class Sweep:
    """One LiDAR sweep: ``xyz`` float32[N, 3] (m) and ``intensity`` float32[N] scaled to [0, 1] where known."""

    xyz: np.ndarray
    intensity: np.ndarray
    path: str = ""

    def __len__(self) -> int:
        return len(self.xyz)


def _checked(xyz: np.ndarray, intensity: np.ndarray, path: Path, drop_invalid: bool = False) -> Sweep:
    if len(xyz) == 0:
        raise DataError(f"{path}: empty sweep (no points)")
    bad = ~np.isfinite(xyz).all(1)
    if bad.any():
        msg = f"{path}: {int(bad.sum())} of {len(xyz)} points have NaN/Inf coordinates"
        if not drop_invalid or bad.all():
            raise DataError(msg)
        warnings.warn(msg + " (dropped)", stacklevel=3)
        xyz, intensity = xyz[~bad], intensity[~bad]
    return Sweep(np.ascontiguousarray(xyz, dtype=np.float32), np.ascontiguousarray(intensity, dtype=np.float32),
                 str(path))


def read_bin(path: str | Path, columns: int | None = None, drop_invalid: bool = False) -> Sweep:
    """KITTI ``.bin`` (4 float32 columns) or nuScenes ``.pcd.bin`` (5 columns, intensity 0..255 scaled to 0..1).

    ``columns`` defaults to 5 for names ending in ``.pcd.bin`` and 4 otherwise. The file is memory-mapped.
    ``drop_invalid``: drop NaN/Inf points with a one-line warning instead of raising (pretraining uses it; a label
    file then no longer lines up, so labelled reads keep the default).
    """
    path = Path(path)
    if columns is None:
        columns = 5 if path.name.endswith(".pcd.bin") else 4
    size = path.stat().st_size
    row = 4 * columns
    if size % row:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the {row}-byte row "
                        f"({columns} float32 columns)")
    if size == 0:
        raise DataError(f"{path}: empty sweep (no points)")
    a = np.memmap(path, dtype=np.float32, mode="r").reshape(-1, columns)
    intensity = a[:, 3] / 255.0 if columns == 5 else a[:, 3]
    return _checked(np.array(a[:, :3]), np.array(intensity), path, drop_invalid)


def read_o3d(path: str | Path, drop_invalid: bool = False) -> Sweep:
    """PCD / PLY through open3d's tensor reader (keeps an ``intensity`` attribute when the file has one)."""
    import open3d as o3d

    path = Path(path)
    pcd = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in pcd.point:
        raise DataError(f"{path}: no points (unreadable or empty {path.suffix} file)")
    xyz = pcd.point.positions.numpy().astype(np.float32)
    if "intensity" in pcd.point:
        inten = pcd.point.intensity.numpy().reshape(-1).astype(np.float32)
        if inten.size and inten.max() > 1.0:
            inten = inten / max(float(inten.max()), 1.0)
    else:
        inten = np.zeros(len(xyz), np.float32)
    return _checked(xyz, inten, path, drop_invalid)


def read_las(path: str | Path, drop_invalid: bool = False) -> Sweep:
    """LAS / LAZ through laspy (LAZ needs lazrs): scaled coordinates in the file's units (metres or feet, see its
    CRS) shifted by their minimum (survey coordinates are ~1e6 and lose float32 precision), intensity / 65535."""
    import laspy

    path = Path(path)
    try:
        las = laspy.read(str(path))
    except Exception as e:  # laspy raises its own error types for bad headers / missing backends
        raise DataError(f"{path}: cannot read LAS/LAZ ({type(e).__name__}: {str(e)[:100]})") from None
    xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], 1)
    if len(xyz) and np.isfinite(xyz).all():
        xyz = xyz - xyz.min(0)
    return _checked(xyz.astype(np.float32), np.asarray(las.intensity, np.float32) / 65535.0, path, drop_invalid)


def read_sweep(path: str | Path, drop_invalid: bool = False) -> Sweep:
    """Dispatch on the suffix: ``.bin`` / ``.pcd.bin``, ``.pcd`` / ``.ply``, ``.las`` / ``.laz``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such sweep file")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return read_bin(path, drop_invalid=drop_invalid)
    if suffix in (".pcd", ".ply"):
        return read_o3d(path, drop_invalid)
    if suffix in (".las", ".laz"):
        return read_las(path, drop_invalid)
    raise DataError(f"{path}: unknown sweep format {suffix!r} (known: {', '.join(SWEEP_SUFFIXES)})")


def decode_labels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint32 SemanticKITTI labels -> (semantic id ``& 0xFFFF``, instance id ``>> 16``), both int64."""
    raw = np.asarray(raw, dtype=np.uint32)
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def read_semantickitti_labels(path: str | Path, n_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class index int64[N] through :data:`LEARNING_MAP` (-1 = ignored), instance id int64[N]) of a ``.label``."""
    path = Path(path)
    size = path.stat().st_size
    if size % 4:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the 4-byte uint32 label")
    sem, inst = decode_labels(np.fromfile(path, dtype=np.uint32))
    if n_points is not None and len(sem) != n_points:
        raise DataError(f"{path}: {len(sem)} labels for a sweep of {n_points} points")
    lut = np.full(max(max(LEARNING_MAP), int(sem.max(initial=0))) + 1, -1, np.int64)
    for k, v in LEARNING_MAP.items():
        lut[k] = v
    return lut[sem], inst


def _rows_3x4(values: list[float], path: Path, what: str) -> np.ndarray:
    if len(values) != 12:
        raise DataError(f"{path}: {what} needs 12 numbers (3x4 row-major), got {len(values)}")
    m = np.eye(4)
    m[:3, :4] = np.asarray(values, np.float64).reshape(3, 4)
    return m


def read_kitti_poses(path: str | Path) -> np.ndarray:
    """KITTI ``poses.txt`` -> float64[K, 4, 4] camera-0 poses ``T_world_cam0``."""
    path = Path(path)
    poses = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                raise DataError(f"{path}: line {i + 1} is not 12 numbers") from None
            poses.append(_rows_3x4(values, path, f"line {i + 1}"))
    if not poses:
        raise DataError(f"{path}: no poses")
    return np.stack(poses)


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI odometry ``calib.txt`` -> ``{"P0".."P3": 4x4, "Tr": 4x4 LiDAR -> camera 0}`` (float64)."""
    path = Path(path)
    out = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, vals = line.split(":", 1)
        try:
            out[key.strip()] = _rows_3x4([float(v) for v in vals.split()], path, key.strip())
        except ValueError:
            raise DataError(f"{path}: {key.strip()} is not 12 numbers") from None
    if "Tr" not in out:
        raise DataError(f"{path}: no 'Tr' (LiDAR -> camera 0) entry")
    return out


def kitti_lidar_poses(poses: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """LiDAR_k -> LiDAR_0 transforms ``inv(Tr) @ inv(P_0) @ P_k @ Tr`` (float64[K, 4, 4]) from camera-0 poses."""
    tr_inv = np.linalg.inv(tr)
    p0_inv = np.linalg.inv(poses[0])
    return np.stack([tr_inv @ p0_inv @ p @ tr for p in poses])
