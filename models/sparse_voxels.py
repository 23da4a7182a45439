"""Point <-> voxel helpers shared by the sparse point encoders (:mod:`models.sparse_unet`, :mod:`models.second`).

Points come as a Pointcept point dict ``{"grid_coord": int32[N, 3] (x, y, z) voxel coordinates >= 0,
"feat": float[N, F], "offset": int64[B] cumulative point counts}``. Points in the same voxel of the same scan are
averaged into one site (:func:`voxelize_points`); spconv receives contiguous int32 indices ``(batch, z, y, x)``
(spconv ignores tensor strides, so a non-contiguous index tensor silently gives wrong sites: :func:`sparse_tensor`
enforces it). :func:`level_point_features` reads back, for every point, the feature of the site containing it at a
coarser level.
"""

from __future__ import annotations

from typing import Sequence

import torch

import spconv.pytorch as spconv

__all__ = ["batch_index", "level_point_features", "lookup_sites", "sparse_tensor", "voxel_keys", "voxelize_points"]


def sparse_tensor(features: torch.Tensor, indices: torch.Tensor, spatial_shape: Sequence[int], batch_size: int,
                  indice_dict: dict | None = None) -> spconv.SparseConvTensor:
    """A ``SparseConvTensor`` whose indices are guaranteed contiguous int32 ``[M, 4]`` (batch, z, y, x)."""
    if indices.ndim != 2 or indices.shape[1] != 4:
        raise ValueError(f"sparse indices must be [M, 4] (batch, z, y, x), got {tuple(indices.shape)}")
    if features.shape[0] != indices.shape[0]:
        raise ValueError(f"sparse tensor: {features.shape[0]} feature rows for {indices.shape[0]} sites")
    t = spconv.SparseConvTensor(features, indices.to(torch.int32).contiguous(), [int(s) for s in spatial_shape],
                                int(batch_size))
    if indice_dict is not None:
        t.indice_dict = indice_dict
    return t


def batch_index(offset: torch.Tensor, n: int) -> torch.Tensor:
    """Scan index of each point from Pointcept's cumulative ``offset`` (int64[B], last entry == N)."""
    offset = offset.long().reshape(-1)
    if offset.numel() == 0 or int(offset[-1]) != n or bool((offset[1:] < offset[:-1]).any()):
        raise ValueError(f"points: offset {offset.tolist()[:8]} must be non-decreasing and end at N={n}")
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    return torch.repeat_interleave(torch.arange(offset.numel(), device=offset.device), counts)


def voxel_keys(idx: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Linear int64 key of (batch, z, y, x) sites inside ``spatial_shape`` (z, y, x)."""
    d, h, w = (int(s) for s in spatial_shape)
    i = idx.long()
    return ((i[:, 0] * d + i[:, 1]) * h + i[:, 2]) * w + i[:, 3]


def lookup_sites(query: torch.Tensor, table: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Row of ``table`` holding each (batch, z, y, x) of ``query``; every query site must exist in the table."""
    tk = voxel_keys(table, spatial_shape)
    qk = voxel_keys(query, spatial_shape)
    sorted_k, order = torch.sort(tk)
    pos = torch.searchsorted(sorted_k, qk).clamp_max(max(len(sorted_k) - 1, 0))
    if len(sorted_k) == 0 or not bool((sorted_k[pos] == qk).all()):
        raise ValueError("lookup_sites: some query voxels are not sites of the level")
    return order[pos]


def voxelize_points(points: dict, min_shape: int = 1) -> tuple[spconv.SparseConvTensor, torch.Tensor]:
    """Average the features of the points falling in each voxel of each scan.

    Returns the stride-1 ``SparseConvTensor`` (sites sorted by (batch, z, y, x)) and ``point2voxel`` int64[N]
    (the site row of each point). The spatial shape is ``max(coord) + 1`` rounded up to a multiple of
    ``min_shape`` so that every level of a ``log2(min_shape)``-times downsampling network has whole cells.
    """
    grid = points["grid_coord"]
    feat = points["feat"]
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"points['grid_coord'] must be [N, 3], got {tuple(grid.shape)}")
    if feat.ndim != 2 or feat.shape[0] != grid.shape[0]:
        raise ValueError(f"points['feat'] must be [N, F] with N={grid.shape[0]}, got {tuple(feat.shape)}")
    n = grid.shape[0]
    if n == 0:
        raise ValueError("points: empty point set (no voxels)")
    if bool((grid < 0).any()):
        raise ValueError("points['grid_coord'] must be >= 0 (shift coordinates by the range minimum first)")
    b = batch_index(points["offset"].to(grid.device), n)
    idx = torch.stack([b, grid[:, 2].long(), grid[:, 1].long(), grid[:, 0].long()], 1)
    top = idx[:, 1:].max(0).values + 1
    shape = [int(-(-int(s) // min_shape) * min_shape) for s in top]
    keys = voxel_keys(idx, shape)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    m = uniq.numel()
    counts = torch.zeros(m, dtype=feat.dtype, device=feat.device).index_add_(
        0, inverse, torch.ones(n, dtype=feat.dtype, device=feat.device))
    vfeat = torch.zeros(m, feat.shape[1], dtype=feat.dtype, device=feat.device).index_add_(0, inverse, feat)
    vfeat = vfeat / counts[:, None]
    d, h, w = shape
    x = uniq % w
    y = (uniq // w) % h
    z = (uniq // (w * h)) % d
    bb = uniq // (w * h * d)
    vidx = torch.stack([bb, z, y, x], 1)
    return sparse_tensor(vfeat, vidx, shape, int(points["offset"].numel())), inverse


def level_point_features(points_vox: torch.Tensor, point2voxel: torch.Tensor, level: spconv.SparseConvTensor,
                         n_sites: int, stride: int, features: torch.Tensor | None = None) -> torch.Tensor:
    """Features of the level-``stride`` site containing each point (nearest parent, no interpolation).

    ``points_vox``: the stride-1 site indices [M, 4]; the parent of a site is ``(b, z // s, y // s, x // s)``
    clamped to the level's spatial shape (exact for k2 s2 downsampling; for SECOND's padded k3 s2 convs the
    floor-site is always among a site's outputs).
    """
    parent = points_vox.long().clone()
    shape = torch.tensor(level.spatial_shape, device=parent.device)
    parent[:, 1:] = torch.minimum(parent[:, 1:] // stride, shape - 1)
    rows = lookup_sites(parent, level.indices[:n_sites], level.spatial_shape)
    feats = level.features if features is None else features
    return feats[rows][point2voxel]
