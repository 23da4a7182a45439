"""SECOND-style 8x sparse voxel encoder (the 3D backbone of SECOND / PV-RCNN / Voxel R-CNN; E-SSL3D's backbone).

Yan, Mao, Li, "SECOND: Sparsely Embedded Convolutional Detection", Sensors 2018; layout as OpenPCDet's
``VoxelBackBone8x`` (shapes and strides only). With KITTI's range [0, -40, -3, 70.4, 40, 1] and voxels
[0.05, 0.05, 0.1] the sparse shape is [41, 1600, 1408] (z, y, x) and the output is [2, 200, 176] x 128::

    conv_input  SubM k3 (F -> 16) BN ReLU                                  stride 1
    conv1       SubM k3 16 -> 16                                           stride 1
    conv2       SparseConv k3 s2 p1 16 -> 32, 2 x SubM k3 32               stride 2
    conv3       SparseConv k3 s2 p1 32 -> 64, 2 x SubM k3 64               stride 4
    conv4       SparseConv k3 s2 p(0,1,1) 64 -> 64, 2 x SubM k3 64         stride 8
    conv_out    SparseConv k(3,1,1) s(2,1,1) 64 -> 128                     z collapsed for a BEV head

Every block is conv -> BN(eps 1e-3, momentum 0.01) -> ReLU without residuals ("post-activation" blocks).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import spconv.pytorch as spconv
from models.sparse_unet import _BN, level_point_features, voxelize_points, sparse_tensor


def _block(conv: nn.Module, channels: int) -> spconv.SparseSequential:
    return spconv.SparseSequential(conv, nn.BatchNorm1d(channels, **_BN), nn.ReLU())


class VoxelBackBone8x(nn.Module):
    """SECOND 8x sparse encoder over a Pointcept point dict (see the module docstring).

    Args:
        in_channels: point feature width.
        channels: widths of conv1..conv4 (default 16, 32, 64, 64); ``out_channels`` of conv_out (128).
        sparse_shape: fixed (z, y, x) grid of the range preset (KITTI [41, 1600, 1408]); None: from the data
            (max grid coordinate + 1 per axis, z at least 25 so that conv_out keeps one layer).

    Shapes:
        forward(points) -> ``{"encoded": SparseConvTensor [M', out_channels] (stride (16 in z), 8, 8),
        "levels": [conv1, conv2, conv3, conv4] SparseConvTensors (strides 1, 2, 4, 8), "num_sites": their rows,
        "point_feat": [N, point_dim = 176] every level gathered to the points, "point2voxel": int64[N],
        "voxels": the stride-1 input}``.
    """

    strides: tuple[int, ...] = (1, 2, 4, 8)

    def __init__(self, in_channels: int = 4, channels: Sequence[int] = (16, 32, 64, 64), out_channels: int = 128,
                 sparse_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.in_channels = int(in_channels)
        self.sparse_shape = None if sparse_shape is None else [int(s) for s in sparse_shape]
        self.level_channels: tuple[int, ...] = (c1, c2, c3, c4)
        self.embed_dim: int = int(out_channels)
        self.point_dim: int = c1 + c2 + c3 + c4
        subm = spconv.SubMConv3d
        self.conv_input = _block(subm(in_channels, c1, 3, padding=1, bias=False, indice_key="subm1"), c1)
        self.conv1 = _block(subm(c1, c1, 3, padding=1, bias=False, indice_key="subm1"), c1)
        self.conv2 = spconv.SparseSequential(
            _block(spconv.SparseConv3d(c1, c2, 3, stride=2, padding=1, bias=False, indice_key="spconv2"), c2),
            _block(subm(c2, c2, 3, padding=1, bias=False, indice_key="subm2"), c2),
            _block(subm(c2, c2, 3, padding=1, bias=False, indice_key="subm2"), c2))
        self.conv3 = spconv.SparseSequential(
            _block(spconv.SparseConv3d(c2, c3, 3, stride=2, padding=1, bias=False, indice_key="spconv3"), c3),
            _block(subm(c3, c3, 3, padding=1, bias=False, indice_key="subm3"), c3),
            _block(subm(c3, c3, 3, padding=1, bias=False, indice_key="subm3"), c3))
        self.conv4 = spconv.SparseSequential(
            _block(spconv.SparseConv3d(c3, c4, 3, stride=2, padding=(0, 1, 1), bias=False, indice_key="spconv4"),
                   c4),
            _block(subm(c4, c4, 3, padding=1, bias=False, indice_key="subm4"), c4),
            _block(subm(c4, c4, 3, padding=1, bias=False, indice_key="subm4"), c4))
        self.conv_out = _block(spconv.SparseConv3d(c4, out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0,
                                                   bias=False, indice_key="spconv_down2"), out_channels)

    def _input(self, points: dict) -> tuple[spconv.SparseConvTensor, torch.Tensor]:
        x, p2v = voxelize_points(points)
        if self.sparse_shape is not None:
            top = x.indices[:, 1:].max(0).values
            if any(int(t) >= s for t, s in zip(top, self.sparse_shape)):
                raise ValueError(f"points: grid_coord beyond the encoder's sparse_shape {self.sparse_shape} (z, y, x)")
            shape = self.sparse_shape
        else:
            # z needs >= 25 cells: 25 -> 13 -> 7 -> 3 (conv4, no z padding) -> 1 (conv_out)
            shape = [max(int(x.spatial_shape[0]), 25), *x.spatial_shape[1:]]
        return sparse_tensor(x.features, x.indices, shape, x.batch_size), p2v

    def forward(self, points: dict) -> dict:
        x, p2v = self._input(points)
        voxels = x
        x1 = self.conv1(self.conv_input(x))
        x2 = self.conv2(x1)
        x3 = self.conv3(x2)
        x4 = self.conv4(x3)
        out = self.conv_out(x4)
        levels = [x1, x2, x3, x4]
        num_sites = [lv.features.shape[0] for lv in levels]
        point_feat = torch.cat([level_point_features(voxels.indices, p2v, lv, n, s)
                                for lv, n, s in zip(levels, num_sites, self.strides)], 1)
        return {"encoded": out, "levels": levels, "num_sites": num_sites, "point_feat": point_feat,
                "point2voxel": p2v, "voxels": voxels}

    def point_features(self, points: dict, levels: str = "all") -> torch.Tensor:
        """[N, D]: ``"last"`` conv4 (stride 8, D = 64) or ``"all"`` conv1..conv4 concatenated (D = 176), each the
        feature of the site containing the point at that stride (nearest parent, no interpolation)."""
        if levels not in ("all", "last"):
            raise ValueError(f"point_features: levels must be 'all' or 'last', got {levels!r}")
        out = self(points)
        if levels == "all":
            return out["point_feat"]
        return out["point_feat"][:, -self.level_channels[-1]:]

    def embed(self, points: dict) -> torch.Tensor:
        """Per-scan mean of the encoded (stride-8, BEV-ready) features: [B, out_channels]."""
        enc = self(points)["encoded"]
        bsz = int(points["offset"].numel())
        b = enc.indices[:, 0].long()
        s = enc.features.new_zeros(bsz, enc.features.shape[1]).index_add_(0, b, enc.features)
        return s / torch.bincount(b, minlength=bsz).clamp_min(1).to(s.dtype)[:, None]


__all__ = ["VoxelBackBone8x"]
