"""LiDAR sweep readers: KITTI / SemanticKITTI, nuScenes, PCD / PLY (open3d), LAS / LAZ (laspy), poses and calib.

Every reader returns a :class:`Sweep` ``(xyz float32[N, 3] in metres, intensity float32[N])`` and raises a one-line
:class:`~modalities.base.DataError` naming the file for a size that is not a whole number of rows, NaN or Inf
coordinates (or, with ``drop_invalid``, drops them with a one-line warning), or an empty sweep.

Conventions (KITTI odometry, Geiger et al. CVPR 2012; SemanticKITTI, Behley et al. ICCV 2019):

- ``velodyne/*.bin``: float32 rows ``(x, y, z, reflectance)`` in the LiDAR frame (x forward, y left, z up).
- ``labels/*.label``: uint32 per point; ``label & 0xFFFF`` is the semantic id, ``label >> 16`` the instance id.
  The semantic id is either a **raw** SemanticKITTI id (0..259: 10 car, 40 road, 70 vegetation, 252 moving car,
  ...), mapped by :data:`LEARNING_MAP` to the 19 evaluated classes (0..18) and -1 (ignored), or a **training id**
  0..19 as written by common preprocessing (semantic-kitti-api ``remap_semantic_labels.py``, its ``learning_map``:
  0 unlabelled, 1 car, ..., 19 traffic-sign), mapped to ``id - 1`` (0 -> -1). ``data.label_format`` (``auto`` |
  ``raw`` | ``train_ids``) says which; ``auto`` decides from the values (:func:`label_format_of`,
  :func:`resolve_label_format`): raw ids above 19 (40, 44, 48, 50, 70, 72, 80, 252, ...) can only be raw;
  values 2..9, 12, 14, 17, 19 can only be training ids; a file with neither (only 0, 1, 10, 11, 13, 15, 16, 18) is
  ambiguous and refused in one line naming the file and ``data.label_format``. A file whose values do not fit the
  resolved format is refused the same way when it is read.
- **3-column points** ``(x, y, z)`` without intensity: plain ``.bin`` files hold 4 float32 columns by default;
  ``data.point_columns`` (``auto`` | ``3`` | ``4``) declares 3 (:func:`bin_columns` decides ``auto`` from the file
  size and, when several widths fit, from which reading gives a continuous scan). Such points, and PCD / PLY files without an
  ``intensity`` attribute, get **intensity 0** (a one-line notice says so); the point features keep their 4
  channels ``[x / r, y / r, z / r_z, 0]``, so recipes, encoders and checkpoints are the same for both kinds of data.
- ``poses.txt``: one 3x4 row-major camera-0 pose per frame (``T_world_cam0``); ``calib.txt`` ``Tr`` is
  LiDAR -> camera 0. The LiDAR pose of frame k in frame 0's LiDAR frame is ``inv(Tr) @ inv(P_0) @ P_k @ Tr``.
- nuScenes ``.pcd.bin``: float32 rows ``(x, y, z, intensity 0..255, ring)``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalities.base import DataError

__all__ = ["CLASS_NAMES", "LABEL_FORMATS", "LEARNING_MAP", "SWEEP_SUFFIXES", "Sweep", "bin_columns", "decode_labels",
           "kitti_lidar_poses", "label_format_of", "notice", "read_bin", "read_kitti_calib", "read_kitti_poses",
           "read_las", "read_o3d", "read_semantickitti_labels", "read_sweep", "resolve_label_format"]

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

LABEL_FORMATS = ("auto", "raw", "train_ids")
#: raw ids that are also valid training ids (0..19): a file holding only these cannot tell the two apart
_BOTH = frozenset(LEARNING_MAP) & frozenset(range(20))


def notice(msg: str) -> None:
    """One line on stdout saying what was decided (once per run: only on the first process of a multi-process run)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0:
        print(msg, flush=True)


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
    """KITTI ``.bin`` (4 float32 columns), nuScenes ``.pcd.bin`` (5 columns, intensity 0..255 scaled to 0..1) or
    ``(x, y, z)`` only (``columns=3``: intensity 0, the 3-column rule of the module docstring).

    ``columns`` defaults to 5 for names ending in ``.pcd.bin`` and 4 otherwise (:func:`bin_columns` detects 3 or 4
    for a dataset with ``data.point_columns: auto``). The file is memory-mapped.
    ``drop_invalid``: drop NaN/Inf points with a one-line warning instead of raising (pretraining uses it; a label
    file then no longer lines up, so labelled reads keep the default).
    """
    path = Path(path)
    if columns is None:
        columns = 5 if path.name.endswith(".pcd.bin") else 4
    if columns not in (3, 4, 5):
        raise DataError(f"data.point_columns: 3 (x, y, z), 4 (x, y, z, intensity) or 5 (nuScenes), not {columns!r}")
    size = path.stat().st_size
    row = 4 * columns
    if size % row:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the {row}-byte row "
                        f"({columns} float32 columns)")
    if size == 0:
        raise DataError(f"{path}: empty sweep (no points)")
    a = np.memmap(path, dtype=np.float32, mode="r").reshape(-1, columns)
    if columns == 3:
        intensity = np.zeros(len(a), np.float32)
    else:
        intensity = a[:, 3] / 255.0 if columns == 5 else a[:, 3]
    return _checked(np.array(a[:, :3]), np.array(intensity), path, drop_invalid)


def _scan_jump(flat: np.ndarray, columns: int, rows: int = 20000) -> float:
    """Median distance between consecutive points when ``flat`` float32 values are read as ``columns`` columns."""
    a = flat[:rows * columns]
    a = a[:len(a) // columns * columns].reshape(-1, columns)[:, :3].astype(np.float64)
    a = a[np.isfinite(a).all(1)]
    if len(a) < 3:
        return float("nan")
    return float(np.median(np.linalg.norm(np.diff(a, axis=0), axis=1)))


def bin_columns(path: str | Path) -> tuple[int, str]:
    """(3 or 4, why) for a plain ``.bin`` sweep: ``(x, y, z)`` or ``(x, y, z, intensity)`` float32 rows.

    Candidates are the row widths of 3 to 6 float32 columns that divide the file size. One candidate: the size
    decides. Several: a 4th column with negative values is not an intensity, and of the rest the readings whose
    consecutive points lie within twice the smallest median step are continuous (a scan is stored in beam /
    azimuth order, while a wrong width shuffles x, y, z and the other columns between rows); the narrowest of them
    wins (reading 3 columns as 6 only skips every other point). A file that reads as 5 or 6 columns, or whose 3-
    and 4-column readings are both continuous (an unordered cloud), is a one-line :class:`DataError` naming
    ``data.point_columns``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty sweep (no points)")
    cands = [c for c in (3, 4, 5, 6) if size % (4 * c) == 0]
    if 3 not in cands and 4 not in cands:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the 16-byte row (4 float32 columns) nor "
                        f"of the 12-byte row (3 columns)")
    if len(cands) == 1:
        return cands[0], "file size"
    flat = np.memmap(path, dtype=np.float32, mode="r")
    if 4 in cands:
        fourth = np.asarray(flat[:80000]).reshape(-1, 4)[:, 3]
        if (fourth[np.isfinite(fourth)] < 0).any() and len(cands) > 1:
            cands.remove(4)
    jumps = {c: _scan_jump(flat, c) for c in cands}
    best = min(jumps.values(), key=lambda j: j if np.isfinite(j) else np.inf)
    near = sorted(c for c, j in jumps.items() if np.isfinite(j) and j <= 2.0 * best)
    why = "median step between consecutive points " + ", ".join(f"{jumps[c]:.2g} m as {c}" for c in sorted(jumps))
    if near and not (3 in near and 4 in near):
        # a reading as a multiple of the true width skips points but stays continuous: the narrowest one wins
        if near[0] in (3, 4):
            return near[0], why + " columns"
        raise DataError(f"{path}: reads as {near[0]} float32 columns ({why} columns), not 3 (x, y, z) or "
                        f"4 (x, y, z, intensity); convert it or set data.point_columns")
    raise DataError(f"{path}: cannot tell 3 (x, y, z) from 4 (x, y, z, intensity) float32 columns; set "
                    f"data.point_columns: 3 or 4")


_NO_INTENSITY: set[str] = set()  # folders whose missing intensity was already said


def read_o3d(path: str | Path, drop_invalid: bool = False) -> Sweep:
    """PCD / PLY through open3d's tensor reader (keeps an ``intensity`` attribute when the file has one; without
    one, intensity is 0 and a one-line notice says so once per folder: the 3-column rule)."""
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
        if str(path.parent) not in _NO_INTENSITY:
            _NO_INTENSITY.add(str(path.parent))
            notice(f"lidar: {path} has no intensity attribute (x, y, z only): intensity set to 0 for such points "
                   f"in {path.parent}")
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


def read_sweep(path: str | Path, drop_invalid: bool = False, columns: int | None = None) -> Sweep:
    """Dispatch on the suffix: ``.bin`` / ``.pcd.bin``, ``.pcd`` / ``.ply``, ``.las`` / ``.laz``. ``columns``: the
    float32 columns of a plain ``.bin`` (3 or 4; default 4), see :func:`read_bin`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such sweep file")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        plain = not path.name.endswith(".pcd.bin")
        return read_bin(path, columns=columns if plain else None, drop_invalid=drop_invalid)
    if suffix in (".pcd", ".ply"):
        return read_o3d(path, drop_invalid)
    if suffix in (".las", ".laz"):
        return read_las(path, drop_invalid)
    raise DataError(f"{path}: unknown sweep format {suffix!r} (known: {', '.join(SWEEP_SUFFIXES)})")


def decode_labels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint32 SemanticKITTI labels -> (semantic id ``& 0xFFFF``, instance id ``>> 16``), both int64."""
    raw = np.asarray(raw, dtype=np.uint32)
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def label_format_of(semantic_ids: np.ndarray) -> str:
    """``"raw"``, ``"train_ids"``, ``"ambiguous"`` (only values valid in both) or ``"neither"`` for a set of
    semantic ids (see the module docstring)."""
    values = {int(v) for v in np.unique(semantic_ids)}
    raw, train = values <= set(LEARNING_MAP), values <= set(range(20))
    if raw and train:
        return "ambiguous"
    return "raw" if raw else "train_ids" if train else "neither"


def _semantic_ids(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % 4:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the 4-byte uint32 label")
    return decode_labels(np.fromfile(path, dtype=np.uint32))[0]


def _values(ids: set[int] | np.ndarray, limit: int = 8) -> str:
    v = sorted({int(x) for x in ids})
    return ", ".join(map(str, v[:limit])) + (", ..." if len(v) > limit else "")


def resolve_label_format(label_files: list[Path], declared: str | None = "auto", where: str = "",
                         sample: int = 16) -> tuple[str, str]:
    """(``"raw"`` or ``"train_ids"``, the one-line decision) for ``data.label_format`` over a dataset's label files.

    A declared ``raw`` / ``train_ids`` is returned as is (each file is checked against it when read). ``auto``
    reads up to ``sample`` files spread over the list and decides from the union of their semantic ids; files
    that disagree (one only raw, another only training ids), values of neither convention, or only values valid
    in both are one-line :class:`DataError` s naming a file and ``data.label_format``. Without label files there
    is nothing to decide: ``("auto", ...)``.
    """
    declared = "auto" if declared in (None, "") else str(declared)
    if declared not in LABEL_FORMATS:
        raise DataError(f"data.label_format: {declared!r} is not one of {', '.join(LABEL_FORMATS)}")
    if declared != "auto":
        return declared, f"lidar: data.label_format={declared} (declared)"
    if not label_files:
        under = f" under {where}" if where else ""
        return "auto", f"lidar: data.label_format=auto: no .label files{under}, nothing to decide"
    idx = np.unique(np.linspace(0, len(label_files) - 1, min(sample, len(label_files))).round().astype(int))
    union: set[int] = set()
    seen: dict[str, Path] = {}
    for i in idx:
        f = Path(label_files[int(i)])
        ids = np.unique(_semantic_ids(f))
        kind = label_format_of(ids)
        if kind == "neither":
            bad = sorted(set(ids.tolist()) - set(LEARNING_MAP) - set(range(20)))
            raise DataError(f"{f}: semantic ids {_values(bad)} are neither SemanticKITTI raw ids nor training ids "
                            f"0..19; data.label_format cannot read these labels")
        if kind != "ambiguous":
            seen.setdefault(kind, f)
        union |= set(ids.tolist())
    if len(seen) == 2:
        raise DataError(f"{seen['train_ids']}: training ids 0..19 while {seen['raw'].name} holds raw SemanticKITTI "
                        f"ids; convert them to one convention (data.label_format applies to every file)")
    kind = label_format_of(np.asarray(sorted(union)))
    n = f"{len(idx)} of {len(label_files)} .label files"
    if kind == "raw":
        return "raw", (f"lidar: data.label_format=auto -> raw (SemanticKITTI raw ids {_values(set(union) - _BOTH)} "
                       f"in {n})")
    if kind == "train_ids":
        return "train_ids", (f"lidar: data.label_format=auto -> train_ids (values {_values(union)} all in 0..19, "
                             f"{_values(set(union) - _BOTH)} are not raw ids; {n}; 0 = unlabelled, 1 = car, ...)")
    raise DataError(f"{label_files[int(idx[0])]}: labels hold only {_values(union)}, valid both as raw SemanticKITTI "
                    f"ids and as training ids; set data.label_format: raw or train_ids")


def read_semantickitti_labels(path: str | Path, n_points: int | None = None, label_format: str = "raw"
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(class index int64[N] 0..18 (-1 = ignored), instance id int64[N]) of a ``.label``.

    ``label_format``: ``"raw"`` SemanticKITTI ids through :data:`LEARNING_MAP`, ``"train_ids"`` 0..19 (0 unlabelled)
    to ``id - 1``, or ``"auto"`` (this file's values decide, :func:`label_format_of`). Values outside the format
    are a one-line :class:`DataError` naming the file and ``data.label_format``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size % 4:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the 4-byte uint32 label")
    sem, inst = decode_labels(np.fromfile(path, dtype=np.uint32))
    if n_points is not None and len(sem) != n_points:
        raise DataError(f"{path}: {len(sem)} labels for a sweep of {n_points} points")
    if label_format == "auto":
        label_format = resolve_label_format([path])[0]
    if label_format == "train_ids":
        bad = sem > 19
        if bad.any():
            raise DataError(f"{path}: semantic ids {_values(np.unique(sem[bad]))} are not training ids 0..19 "
                            f"(raw SemanticKITTI ids?); check data.label_format (train_ids)")
        return sem - 1, inst
    if label_format != "raw":
        raise DataError(f"data.label_format: {label_format!r} is not one of {', '.join(LABEL_FORMATS)}")
    bad = ~np.isin(sem, np.fromiter(LEARNING_MAP, np.int64))
    if bad.any():
        raise DataError(f"{path}: semantic ids {_values(np.unique(sem[bad]))} are not SemanticKITTI raw ids "
                        f"(training ids 0..19?); check data.label_format (raw)")
    lut = np.full(max(LEARNING_MAP) + 1, -1, np.int64)
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
