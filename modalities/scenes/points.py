"""Scene -> Pointcept point dictionaries: normals, grid sampling, features, two augmented views, patch masks, collate.

Point dictionaries follow the Pointcept convention (ARCHITECTURE.md): ``coord`` float32[N, 3],
``grid_coord`` int32[N, 3] (``floor((coord - min coord) / grid_size)``, so non-negative), ``feat`` float32[N, 6]
= colour scaled to [-1, 1] and unit normal, ``offset`` int64[B] (cumulative point counts: scene ``b`` holds rows
``offset[b-1]:offset[b]``), optional ``segment`` int64[N] (-1 ignored) and ``index`` int64[N] (the point's row in
its grid-sampled scene, which is how two views of one scene find their shared points).

No colour (LiDAR frames, uncoloured PLY): the colour channels are the constant 0 (mid grey), a documented
fallback, so one encoder reads every format.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from modalities.base import DataError
from modalities.options import coerce
from modalities.scenes.readers import Scene

__all__ = ["FEAT_CHANNELS", "ViewAugment", "collate_points", "estimate_normals", "grid_coords", "grid_sample",
           "patch_mask", "point_dict", "prepare_scene", "subset_points", "two_views"]

FEAT_CHANNELS = 6  # colour (3) + normal (3)


# ------------------------------------------------------------------------------------------------- normals

def estimate_normals(coord: np.ndarray, radius: float, max_nn: int = 30, viewpoint: np.ndarray | None = None,
                     up: bool = False) -> np.ndarray:
    """Unit normals float32[N, 3] by local PCA (open3d: smallest-eigenvalue eigenvector of the covariance of the
    ``max_nn`` nearest neighbours within ``radius``), oriented consistently:

    - ``viewpoint`` given (a LiDAR sensor, or an indoor scene's centre): ``n . (viewpoint - p) >= 0``, every
      normal faces the point the surface was seen from (floors up, walls inwards, ceilings down);
    - ``up``: ``n_z >= 0`` (aerial / photogrammetric scenes seen from above).

    The rule is exact for surfaces seen from the viewpoint (floors, walls, a LiDAR's whole scan); faces of indoor
    objects turned away from the room centre get the inward sign (tested: tests/modalities/scenes/test_points.py).
    No rule on points alone can tell the two sides of a thin plate apart (both lie within ``radius``); meshes
    (ScanNet PLY) therefore take their normals from the faces' winding
    (:func:`modalities.scenes.readers.mesh_vertex_normals`) and never reach this estimate.

    Fewer than 3 points (or a point without neighbours) cannot define a plane: those normals are ``(0, 0, 1)``.
    """
    coord = np.asarray(coord, dtype=np.float64)
    n = len(coord)
    if n < 3:
        return np.tile(np.array([0, 0, 1], np.float32), (n, 1))
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(coord))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=float(radius), max_nn=int(max_nn)))
    normal = np.asarray(pc.normals, dtype=np.float64)
    bad = ~np.isfinite(normal).all(1) | (np.linalg.norm(normal, axis=1) < 0.5)
    normal[bad] = (0.0, 0.0, 1.0)
    if viewpoint is not None:
        flip = ((np.asarray(viewpoint, np.float64)[None] - coord) * normal).sum(1) < 0
    elif up:
        flip = normal[:, 2] < 0
    else:
        flip = np.zeros(n, bool)
    normal[flip] *= -1.0
    return normal.astype(np.float32)


# -------------------------------------------------------------------------------------------- grid sampling

def grid_coords(coord: np.ndarray, grid_size: float, origin: np.ndarray | None = None) -> np.ndarray:
    """int32[N, 3] voxel coordinates ``floor((coord - origin) / grid_size)``, origin the minimum corner."""
    if grid_size <= 0:
        raise DataError(f"data.grid_size: must be > 0, got {grid_size}")
    coord = np.asarray(coord, dtype=np.float64)
    origin = coord.min(0) if origin is None else origin
    return np.floor((coord - origin) / grid_size).astype(np.int32)


def _voxel_keys(gc: np.ndarray) -> np.ndarray:
    gc = gc.astype(np.int64) - gc.min(0)
    ext = gc.max(0) + 1
    return (gc[:, 0] * ext[1] + gc[:, 1]) * ext[2] + gc[:, 2]


def grid_sample(coord: np.ndarray, grid_size: float, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """One point per occupied voxel of edge ``grid_size`` (Pointcept's GridSample).

    Returns ``(keep, inverse)``: int64 indices of the kept points (the first point of each voxel in file order, or
    a uniformly random one with ``rng``), and int64[N] the position in ``keep`` of every point's voxel.
    """
    if len(coord) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = _voxel_keys(grid_coords(coord, grid_size))
    order = rng.permutation(len(keys)) if rng is not None else np.arange(len(keys))
    _, first, inverse = np.unique(keys[order], return_index=True, return_inverse=True)
    keep = order[first]
    inv = np.empty(len(keys), np.int64)
    inv[order] = inverse.reshape(-1)
    return keep.astype(np.int64), inv


@dataclass
class PreparedScene:
    """A scene grid-sampled once at ``grid_size`` with normals: ``coord``/``color``/``normal`` float32[M, 3]
    (``color`` None if the file has none), ``segment`` int64[M] or None."""

    coord: np.ndarray
    color: np.ndarray | None
    normal: np.ndarray
    segment: np.ndarray | None
    grid_size: float


def scene_viewpoint(scene: Scene) -> tuple[np.ndarray | None, bool]:
    """How normals are oriented: towards the sensor (LiDAR), up (SensatUrban, seen from the air), or towards the
    bounding-box centre (indoor scenes, seen from inside the room)."""
    if scene.sensor is not None:
        return np.asarray(scene.sensor, np.float64), False
    if str(scene.path).endswith(".bin"):  # SensatUrban photogrammetry
        return None, True
    lo, hi = scene.coord.min(0).astype(np.float64), scene.coord.max(0).astype(np.float64)
    return (lo + hi) / 2.0, False


def prepare_scene(scene: Scene, grid_size: float, normal_radius: float | None = None) -> PreparedScene:
    """Grid-sample ``scene`` (first point per voxel) and estimate normals where the file has none (radius
    ``normal_radius``, default 4 voxels)."""
    keep, _ = grid_sample(scene.coord, grid_size)
    coord = scene.coord[keep]
    if scene.normal is not None:
        normal = scene.normal[keep].astype(np.float32)
    else:
        viewpoint, up = scene_viewpoint(scene)
        normal = estimate_normals(coord, normal_radius or 4.0 * grid_size, viewpoint=viewpoint, up=up)
    color = None if scene.color is None else scene.color[keep]
    seg = None if scene.segment is None else scene.segment[keep]
    return PreparedScene(coord.astype(np.float32), color, normal, seg, float(grid_size))


def point_dict(coord: np.ndarray, color: np.ndarray | None, normal: np.ndarray, grid_size: float,
               segment: np.ndarray | None = None, index: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """A one-scene Pointcept dictionary (``offset`` = [N]); no colour -> constant 0 colour channels."""
    n = len(coord)
    colour = np.zeros((n, 3), np.float32) if color is None else np.asarray(color, np.float32) * 2.0 - 1.0
    out = {
        "coord": torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32)),
        "grid_coord": torch.from_numpy(grid_coords(coord, grid_size)),
        "feat": torch.from_numpy(np.concatenate([colour, np.asarray(normal, np.float32)], 1)),
        "offset": torch.tensor([n], dtype=torch.int64),
    }
    if segment is not None:
        out["segment"] = torch.from_numpy(np.asarray(segment, np.int64))
    if index is not None:
        out["index"] = torch.from_numpy(np.asarray(index, np.int64))
    return out


# ------------------------------------------------------------------------------------------------ views

@dataclass
class ViewAugment:
    """Two-view generation (Pointcept / MSC-style augmentations).

    Each view is a crop of the grid-sampled scene: the ``n = round(f * M)`` points nearest (in x-y) to a centre
    ``c + d`` (``f ~ U(crop)``, at most ``max_points``; ``c`` a random scene point shared by both views; ``d`` a
    shift in a random direction of ``U(0, shift)`` x ``r``, ``r`` the radius of the ``n`` points nearest ``c``;
    with ``shift < 1`` both views hold the neighbourhood of ``c``, so they always overlap), then rotated about z by
    ``U(-rotate, rotate)`` (radians) and tilted about x and y by ``U(-tilt, tilt)``, scaled by ``U(scale)``,
    mirrored in x with probability ``flip``, jittered by ``N(0, jitter^2)`` metres (clipped at 5 sigma), and its
    colour changed by a brightness shift ``U(-b, b)``, a contrast factor ``U(1 - c, 1 + c)`` and per-point noise
    ``N(0, colour_noise^2)`` (``colour_jitter = (b, c)``, clipped to [0, 1]). Normals follow the rotation and flip.

    The fields are the options of ``data.augment`` (:class:`~modalities.scenes.options.ScenesOptions`), their
    defaults the values real runs use.
    """

    crop: tuple[float, float] = (0.6, 1.0)  # share of the scene's voxels in each view
    max_points: int = 80000  # voxels per view at most
    shift: float = 0.5  # offset between the two views' crop centres, x the crop radius x (1 - crop[0])
    rotate: float = 3.1416  # about z, radians
    tilt: float = 0.049  # about x and y, radians (pi / 64)
    scale: tuple[float, float] = (0.9, 1.1)
    flip: float = 0.5  # probability of mirroring in x
    jitter: float = 0.005  # metres
    colour_jitter: tuple[float, float] = (0.1, 0.2)  # brightness shift, contrast factor range
    colour_noise: float = 0.02

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "ViewAugment":
        """The augmentation of ``data.augment`` (a mapping; missing options take the field defaults): an unknown
        option, a value of the wrong type or a bad crop / size is a one-line error naming it."""
        cfg = dict(cfg or {})
        hints = typing.get_type_hints(cls)
        for k in cfg:
            if k not in hints:
                raise DataError(f"data.augment.{k}: unknown option; known: {', '.join(sorted(hints))}")
        aug = cls(**{k: coerce(v, hints[k], f"data.augment.{k}") for k, v in cfg.items()})
        if not 0 < aug.crop[0] <= aug.crop[1] <= 1:
            raise DataError(f"data.augment.crop: need 0 < low <= high <= 1, got {list(aug.crop)}")
        if aug.max_points < 1:
            raise DataError(f"data.augment.max_points: must be >= 1, got {aug.max_points}")
        return aug

    def to_dict(self) -> dict[str, Any]:
        """The options as plain YAML values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def view_size(self, m: int, rng: np.random.Generator) -> int:
        """Points in a view of a scene of ``m`` points: ``round(f * m)``, ``f ~ U(crop)``, at most ``max_points``."""
        return int(np.clip(round(rng.uniform(*self.crop) * m), 1, min(m, self.max_points)))

    @staticmethod
    def crop_indices(coord: np.ndarray, centre: np.ndarray, n: int) -> np.ndarray:
        """Sorted indices of the ``n`` points nearest to ``centre`` in x-y."""
        m = len(coord)
        d2 = ((coord[:, :2] - centre[None, :2]) ** 2).sum(1)
        idx = np.argpartition(d2, n - 1)[:n] if n < m else np.arange(m)
        return np.sort(idx)

    def transform(self, coord: np.ndarray, normal: np.ndarray, color: np.ndarray | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        a = rng.uniform(-self.rotate, self.rotate)
        bx, by = rng.uniform(-self.tilt, self.tilt, 2)
        ca, sa = np.cos(a), np.sin(a)
        rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(bx), -np.sin(bx)], [0, np.sin(bx), np.cos(bx)]])
        ry = np.array([[np.cos(by), 0, np.sin(by)], [0, 1, 0], [-np.sin(by), 0, np.cos(by)]])
        r = rz @ ry @ rx
        if rng.uniform() < self.flip:
            r = np.diag([-1.0, 1.0, 1.0]) @ r
        centre = coord.mean(0)
        s = rng.uniform(*self.scale)
        out = (coord - centre) @ r.T * s + centre
        if self.jitter > 0:
            out = out + np.clip(rng.normal(0, self.jitter, out.shape), -5 * self.jitter, 5 * self.jitter)
        nrm = normal @ r.T
        if color is not None:
            b, c = self.colour_jitter
            mean = color.mean(0, keepdims=True)
            color = (color - mean) * rng.uniform(1 - c, 1 + c) + mean + rng.uniform(-b, b)
            color = np.clip(color + rng.normal(0, self.colour_noise, color.shape), 0.0, 1.0)
        return out.astype(np.float32), nrm.astype(np.float32), None if color is None else color.astype(np.float32)


def two_views(scene: PreparedScene, aug: ViewAugment, rng: np.random.Generator
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two overlapping augmented crops of one prepared scene, each a point dictionary whose ``index`` gives the
    rows of ``scene`` it holds (see :class:`ViewAugment`)."""
    m = len(scene.coord)
    c = scene.coord[rng.integers(m)].astype(np.float64)
    d2 = ((scene.coord[:, :2] - c[None, :2]) ** 2).sum(1)
    views = []
    for _ in range(2):
        n = aug.view_size(m, rng)
        radius = float(np.sqrt(np.partition(d2, n - 1)[n - 1]))  # the crop's radius around c
        angle = rng.uniform(0, 2 * np.pi)
        centre = c + np.array([np.cos(angle), np.sin(angle), 0.0]) * rng.uniform(0, aug.shift) * radius
        idx = aug.crop_indices(scene.coord, centre, n)
        colour = None if scene.color is None else scene.color[idx]
        coord, normal, colour = aug.transform(scene.coord[idx].astype(np.float64), scene.normal[idx], colour, rng)
        views.append(point_dict(coord, colour, normal, scene.grid_size, index=idx))
    return views[0], views[1]


# ------------------------------------------------------------------------------------------------- masks

def patch_mask(grid_coord: torch.Tensor, offset: torch.Tensor, patch_size: int, ratio: float,
               seeds: Sequence[int]) -> torch.Tensor:
    """bool[N]: the points of masked patches. Patches are the cubes of ``patch_size`` voxels
    (``grid_coord // patch_size``); in every scene of the batch exactly ``round(ratio * P)`` of its ``P`` occupied
    patches are masked (at least 1 and at most ``P - 1`` when ``P >= 2``; none when ``P = 1``), chosen uniformly
    from that scene's seed, so masks do not depend on how the batch is split across processes.

    With ``patch_size`` a multiple of the UNet's coarsest stride, a patch is a union of voxels at every level, so
    the masked voxels of every level are exactly those whose points are all masked.
    """
    if patch_size < 1:
        raise DataError(f"objective.patch_size: must be >= 1, got {patch_size}")
    if not 0.0 <= ratio < 1.0:
        raise DataError(f"objective.mask_ratio: must be in [0, 1), got {ratio}")
    gc = grid_coord.cpu().numpy().astype(np.int64) // int(patch_size)
    ends = offset.cpu().numpy().astype(np.int64)
    starts = np.r_[0, ends[:-1]]
    out = np.zeros(len(gc), bool)
    for s, e, seed in zip(starts, ends, seeds):
        if e <= s:
            continue
        _, inv = np.unique(_voxel_keys(gc[s:e]), return_inverse=True)
        p = int(inv.max()) + 1
        k = 0 if p < 2 else int(np.clip(round(ratio * p), 1, p - 1))
        chosen = np.random.default_rng([int(seed), 0x4D534D]).permutation(p)[:k]
        hit = np.zeros(p, bool)
        hit[chosen] = True
        out[s:e] = hit[inv.reshape(-1)]
    return torch.from_numpy(out).to(grid_coord.device)


def subset_points(points: Mapping[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``keep`` (bool[N]) of a batched point dictionary, ``offset`` recomputed (scenes left empty keep
    a zero-length slot)."""
    n = len(points["coord"])
    out = {k: v[keep] for k, v in points.items() if torch.is_tensor(v) and v.ndim >= 1 and len(v) == n and k != "offset"}
    batch = _batch_ids(points["offset"], n)
    counts = torch.bincount(batch[keep], minlength=len(points["offset"]))
    out["offset"] = torch.cumsum(counts, 0)
    return out


def _batch_ids(offset: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    return torch.repeat_interleave(torch.arange(len(offset), device=offset.device), counts, output_size=n)


# ------------------------------------------------------------------------------------------------ collate

def _cat_points(dicts: Sequence[Mapping[str, torch.Tensor]], index_base: Sequence[int] | None = None
                ) -> dict[str, torch.Tensor]:
    keys = [k for k in dicts[0] if k != "offset"]
    out = {}
    for k in keys:
        parts = [d[k] for d in dicts]
        if k == "index" and index_base is not None:
            parts = [p + int(b) for p, b in zip(parts, index_base)]
        out[k] = torch.cat(parts)
    out["offset"] = torch.cumsum(torch.tensor([len(d["coord"]) for d in dicts], dtype=torch.int64), 0)
    return out


def collate_points(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch point samples: one-scene dictionaries are concatenated with a cumulative ``offset``; two-view samples
    (``view_a``/``view_b``) become two batched dictionaries whose ``index`` rows are made unique across the batch
    (scene ``b``'s indices shifted by the point counts of scenes ``< b``). ``seed`` becomes int64[B]."""
    out: dict[str, Any] = {}
    if "view_a" in samples[0]:
        sizes = [int(s["scene_points"]) for s in samples]
        base = np.r_[0, np.cumsum(sizes)[:-1]]
        out["view_a"] = _cat_points([s["view_a"] for s in samples], base)
        out["view_b"] = _cat_points([s["view_b"] for s in samples], base)
    else:
        out.update(_cat_points([{k: v for k, v in s.items() if torch.is_tensor(v)} for s in samples]))
    if "seed" in samples[0]:
        out["seed"] = torch.tensor([int(s["seed"]) for s in samples], dtype=torch.int64)
    if "scene" in samples[0]:
        out["scene"] = [s["scene"] for s in samples]
    return out
