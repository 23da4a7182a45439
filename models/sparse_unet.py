"""Sparse-voxel UNet on spconv (Pointcept's SpUNet layout) and the shared point <-> voxel helpers.

Input is a Pointcept point dict ``{"grid_coord": int32[N, 3] (x, y, z) voxel coordinates >= 0,
"feat": float[N, F], "offset": int64[B] cumulative point counts}``. Points in the same voxel of the same scan
are averaged into one site; spconv receives contiguous int32 indices ``(batch, z, y, x)`` (spconv ignores
tensor strides, so a non-contiguous index tensor silently gives wrong sites: :func:`sparse_tensor` enforces it).

Architecture (``L`` levels, encoder channels ``c_0..c_{L-1}``, decoder channels ``d_0..d_{L-2}`` coarsest first)::

    stem    SubM k3 (F -> c_0) BN ReLU, enc_blocks x BasicBlock(c_0)                      stride 1
    down_l  SparseConv k2 s2 (c_{l-1} -> c_l) BN ReLU, enc_blocks x BasicBlock(c_l)       stride 2^l
    up_i    SparseInverseConv k2 (-> d_i) BN ReLU on the sites of encoder level t = L-2-i,
            skip fusion: Linear([up, skip_t] -> d_i) BN ReLU,
            decoder_hook(i, x)                      (may append sites: MSM mask tokens),
            dec_blocks x BasicBlock(d_i) with their own rulebooks ("dec{t}"),
            keep the first n rows (the sites that existed before the hook) for up_{i+1}.

BasicBlock: ``x + BN(SubM(ReLU(BN(SubM(x)))))`` then ReLU (He et al. 2016 on submanifold convs, Graham et al.
CVPR 2018). Strided k2 s2 convs make each fine site the child of exactly one coarse site
``floor(coord / 2)``, so point features can be gathered at any level without interpolation.

References: Graham, Engelcke, van der Maaten, "3D Semantic Segmentation with Submanifold Sparse Convolutional
Networks", CVPR 2018; Wu et al., Pointcept SpUNet; Yan et al., SECOND, Sensors 2018 (see models/second.py).
On CPU, ``models.spconv_cpu.apply_cpu_fixes`` is applied on import (nothing is patched when CUDA is available).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import spconv.pytorch as spconv
from models.spconv_cpu import apply_cpu_fixes

apply_cpu_fixes()

DecoderHook = Callable[[int, spconv.SparseConvTensor], spconv.SparseConvTensor]

_BN = dict(eps=1e-3, momentum=0.01)  # OpenPCDet's SECOND norm settings


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


class BasicBlock(spconv.SparseModule):
    """Residual block of two 3x3x3 submanifold convs: ``ReLU(x + BN(SubM(ReLU(BN(SubM(x))))))``."""

    def __init__(self, channels: int, indice_key: str, bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn1 = nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn2 = nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        h = self.conv1(x)
        h = h.replace_feature(F.relu(self.bn1(h.features)))
        h = self.conv2(h)
        return h.replace_feature(F.relu(self.bn2(h.features) + x.features))


def _conv_bn_relu(conv: nn.Module, channels: int, bn_momentum: float = 0.01) -> spconv.SparseSequential:
    return spconv.SparseSequential(conv, nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum), nn.ReLU())


def _as_tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(v),) * n if isinstance(v, int) else tuple(int(x) for x in v)


class SparseUNet(nn.Module):
    """Submanifold sparse-conv UNet over voxelised point clouds (see the module docstring for the layout).

    Args:
        in_channels: point feature width ``F``.
        channels: encoder channels per level, finest first (``L = len(channels)`` levels, strides 1..2^(L-1)).
        decoder_channels: decoder output channels per decoder level, coarsest first (``L - 1`` of them);
            default mirrors the encoder: ``channels[L-2], ..., channels[0]``.
        enc_blocks, dec_blocks: BasicBlocks per level (an int or one per level).
        bn_momentum: of every BatchNorm (0.1, PyTorch's default: running statistics settle within a few
            hundred steps, so short CPU runs evaluate in eval mode correctly; OpenPCDet uses 0.01).

    Attributes:
        embed_dim: channels of the finest decoder level (``point_feat`` width).
        level_channels: ``decoder_channels`` (coarsest first).

    Shapes:
        forward(points) -> ``{"levels": [SparseConvTensor] * (L-1) coarsest first, "point_feat": [N, embed_dim],
        "point2voxel": int64[N], "num_sites": [n_i], "voxels": SparseConvTensor (stride-1 input)}``.
    """

    def __init__(self, in_channels: int = 4, channels: Sequence[int] = (32, 64, 128, 256, 384),
                 decoder_channels: Sequence[int] | None = None, enc_blocks: int | Sequence[int] = 2,
                 dec_blocks: int | Sequence[int] = 2, bn_momentum: float = 0.1) -> None:
        super().__init__()
        m = float(bn_momentum)
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError("SparseUNet: channels needs at least 2 levels")
        n_levels = len(channels)
        dec = tuple(int(c) for c in decoder_channels) if decoder_channels is not None else channels[-2::-1]
        if len(dec) != n_levels - 1:
            raise ValueError(f"SparseUNet: decoder_channels needs {n_levels - 1} entries, got {len(dec)}")
        eb, db = _as_tuple(enc_blocks, n_levels), _as_tuple(dec_blocks, n_levels - 1)
        self.in_channels = int(in_channels)
        self.channels = channels
        self.level_channels: tuple[int, ...] = dec
        self.embed_dim: int = dec[-1]
        self.strides: tuple[int, ...] = tuple(2 ** (n_levels - 2 - i) for i in range(n_levels - 1))

        self.stem = _conv_bn_relu(spconv.SubMConv3d(in_channels, channels[0], 3, padding=1, bias=False,
                                                    indice_key="subm0"), channels[0], m)
        self.enc = nn.ModuleList()
        for lvl in range(n_levels):
            layers: list[nn.Module] = []
            if lvl > 0:
                layers.append(_conv_bn_relu(spconv.SparseConv3d(channels[lvl - 1], channels[lvl], 2, stride=2,
                                                                bias=False, indice_key=f"down{lvl}"), channels[lvl], m))
            layers += [BasicBlock(channels[lvl], f"subm{lvl}", m) for _ in range(eb[lvl])]
            self.enc.append(spconv.SparseSequential(*layers))
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.dec = nn.ModuleList()
        prev = channels[-1]
        for i, d in enumerate(dec):
            t = n_levels - 2 - i
            self.up.append(_conv_bn_relu(spconv.SparseInverseConv3d(prev, d, 2, bias=False,
                                                                    indice_key=f"down{t + 1}"), d, m))
            self.fuse.append(nn.Sequential(nn.Linear(d + channels[t], d, bias=False),
                                           nn.BatchNorm1d(d, eps=1e-3, momentum=m), nn.ReLU()))
            self.dec.append(spconv.SparseSequential(*[BasicBlock(d, f"dec{t}", m) for _ in range(db[i])]))
            prev = d

    def forward(self, points: dict, decoder_hook: DecoderHook | None = None) -> dict:
        """Encode ``points``; ``decoder_hook(i, x)`` runs at decoder level ``i`` after skip fusion (may append rows)."""
        x, point2voxel = voxelize_points(points, min_shape=2 ** (len(self.channels) - 1))
        voxels = x
        x = self.stem(x)
        skips = []
        for lvl, stage in enumerate(self.enc):
            x = stage(x)
            skips.append(x)
        levels, num_sites = [], []
        n_levels = len(self.channels)
        for i in range(n_levels - 1):
            t = n_levels - 2 - i
            x = self.up[i](x)
            skip = skips[t]
            x = x.replace_feature(self.fuse[i](torch.cat([x.features, skip.features], 1)))
            n = x.features.shape[0]
            if decoder_hook is not None:
                x = decoder_hook(i, x)
                if x.features.shape[0] < n:
                    raise ValueError(f"decoder_hook removed sites at level {i}: it may only append rows")
                x = sparse_tensor(x.features, x.indices, skip.spatial_shape, skip.batch_size, skip.indice_dict)
            x = self.dec[i](x)
            levels.append(x)
            num_sites.append(n)
            if x.features.shape[0] != n:  # drop appended sites: the next inverse conv's rulebook knows n rows
                x = sparse_tensor(x.features[:n], x.indices[:n], x.spatial_shape, x.batch_size, x.indice_dict)
        point_feat = levels[-1].features[:num_sites[-1]][point2voxel]
        return {"levels": levels, "point_feat": point_feat, "point2voxel": point2voxel, "num_sites": num_sites,
                "voxels": voxels}

    def point_features(self, points: dict, levels: str = "all") -> torch.Tensor:
        """Per-point features [N, D]: ``"last"`` the finest decoder level (D = embed_dim); ``"all"`` every decoder
        level's feature of the voxel containing the point at that level (nearest parent, no trilinear
        interpolation), concatenated coarsest first (D = sum(level_channels))."""
        if levels not in ("all", "last"):
            raise ValueError(f"point_features: levels must be 'all' or 'last', got {levels!r}")
        out = self(points)
        if levels == "last":
            return out["point_feat"]
        vox = out["voxels"].indices
        feats = [level_point_features(vox, out["point2voxel"], lv, n, s)
                 for lv, n, s in zip(out["levels"], out["num_sites"], self.strides)]
        return torch.cat(feats, 1)

    def embed(self, points: dict) -> torch.Tensor:
        """Per-scan embedding [B, sum(level_channels)]: mean over each decoder level's sites, concatenated."""
        return pool_levels(self(points), int(points["offset"].numel()))


def pool_levels(out: dict, batch_size: int) -> torch.Tensor:
    """Per-scan mean over the (original, pre-hook) sites of every decoder level of a :class:`SparseUNet` output,
    concatenated: [B, sum(level channels)]."""
    pooled = []
    for lv, n in zip(out["levels"], out["num_sites"]):
        b = lv.indices[:n, 0].long()
        s = lv.features.new_zeros(batch_size, lv.features.shape[1]).index_add_(0, b, lv.features[:n])
        c = torch.bincount(b, minlength=batch_size).clamp_min(1).to(s.dtype)
        pooled.append(s / c[:, None])
    return torch.cat(pooled, 1)


__all__ = ["BasicBlock", "SparseUNet", "batch_index", "level_point_features", "lookup_sites", "pool_levels",
           "sparse_tensor", "voxelize_points", "voxel_keys"]
