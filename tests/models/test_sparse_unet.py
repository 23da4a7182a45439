"""SparseUNet and the SECOND 8x encoder on a real KITTI sweep: voxel averaging, levels, decoder hook, gathers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import spconv.pytorch as spconv
import torch

import models
from models.sparse_unet import SparseUNet
from models.sparse_voxels import voxelize_points
from tests.conftest import shared_data

VOXEL = 0.25


# spconv's CPU path loses badly to oversubscription on a shared 2-core machine (1- and 2-thread correctness of
# the convolutions is tested in test_sparse_conv.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kitti_points() -> dict:
    """Two scans (frames 0 and 1 of SemanticKITTI seq 00) cropped to +-16 m, 0.25 m voxels, 4 features."""
    root = shared_data("3d/semantickitti/sequences/00/velodyne")
    coords, feats, offset = [], [], []
    for name in ("000000.bin", "000001.bin"):
        a = np.fromfile(root / name, dtype=np.float32).reshape(-1, 4)
        a = a[(np.abs(a[:, 0]) < 16) & (np.abs(a[:, 1]) < 16) & (a[:, 2] > -3) & (a[:, 2] < 1)][::4]
        g = np.floor((a[:, :3] - np.array([-16, -16, -3], dtype=np.float32)) / VOXEL).astype(np.int32)
        coords.append(g)
        feats.append(a)
        offset.append(sum(len(c) for c in coords))
    return {"grid_coord": torch.from_numpy(np.concatenate(coords)), "feat": torch.from_numpy(np.concatenate(feats)),
            "offset": torch.tensor(offset, dtype=torch.int64)}


def test_voxelize_averages_points_in_each_voxel(kitti_points):
    x, p2v = voxelize_points(kitti_points)
    n = kitti_points["feat"].shape[0]
    assert x.indices.dtype == torch.int32 and x.indices.is_contiguous()
    assert len(torch.unique(x.indices, dim=0)) == len(x.indices) < n  # some voxels hold several points
    # each point sits in its voxel: (batch, z, y, x) == (scan, gz, gy, gx)
    b = torch.repeat_interleave(torch.arange(2), torch.diff(kitti_points["offset"], prepend=torch.tensor([0])))
    g = kitti_points["grid_coord"].long()
    assert torch.equal(x.indices[p2v].long(), torch.stack([b, g[:, 2], g[:, 1], g[:, 0]], 1))
    # the feature of a voxel with several points is their mean
    counts = torch.bincount(p2v)
    v = int(torch.argmax(counts))
    assert torch.allclose(x.features[v], kitti_points["feat"][p2v == v].mean(0), atol=1e-6)


def test_unet_levels_shapes_and_backward(kitti_points):
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs")
    out = enc(kitti_points)
    assert enc.level_channels == (32, 16) and enc.point_dim == 16 and enc.embed_dim == 48
    assert [lv.features.shape[1] for lv in out["levels"]] == list(enc.level_channels)
    assert out["levels"][-1].spatial_shape == out["voxels"].spatial_shape  # finest decoder level is stride 1
    assert out["point_feat"].shape == (kitti_points["feat"].shape[0], enc.point_dim)
    out["point_feat"].pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    json.dumps(enc.config)


def test_point_features_all_last_and_embed(kitti_points):
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs").eval()
    with torch.no_grad():
        last = enc.point_features(kitti_points, "last")
        full = enc.point_features(kitti_points, "all")
        emb = enc.embed(kitti_points)
    assert full.shape == (last.shape[0], sum(enc.level_channels))
    assert torch.equal(full[:, -enc.point_dim:], last)  # the finest level's block of "all" is "last"
    # points in the same stride-2 cell share their coarse-level feature
    g = kitti_points["grid_coord"].long() // 2
    same = (g == g[0]).all(1) & (torch.arange(len(g)) < int(kitti_points["offset"][0]))
    assert same.sum() > 1 and torch.equal(full[same, :32], full[same][:1, :32].expand(int(same.sum()), -1))
    assert emb.shape == (2, sum(enc.level_channels))
    with pytest.raises(ValueError, match="levels must be"):
        enc.point_features(kitti_points, "first")


def test_eval_features_are_equivariant_to_shifts_by_the_coarsest_stride(kitti_points):
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs").eval()  # strides 1, 2, 4: shifts by 4 voxels keep every cell
    shifted = dict(kitti_points, grid_coord=kitti_points["grid_coord"] + torch.tensor([8, 4, 12], dtype=torch.int32))
    with torch.no_grad():
        a = enc.point_features(kitti_points, "all")
        b = enc.point_features(shifted, "all")
    assert torch.allclose(a, b, atol=1e-5)


def test_decoder_hook_appends_sites_with_their_own_rulebooks(kitti_points):
    torch.manual_seed(0)
    enc = SparseUNet(in_channels=4, channels=(8, 16, 32), enc_blocks=1, dec_blocks=1).eval()
    calls = []

    def identity(i: int, x):
        calls.append((i, x.features.shape[1]))
        return x

    with torch.no_grad():
        base = enc(kitti_points)
        same = enc(kitti_points, decoder_hook=identity)
    assert calls == [(0, 16), (1, 8)]
    assert torch.equal(base["point_feat"], same["point_feat"])

    added = {}

    def append_neighbours(i: int, x):
        # new sites one cell above the first 50 sites of scan 0 (MSM-style mask tokens: constant feature)
        idx = x.indices[:50].clone()
        idx[:, 1] += 1
        keep = ~(x.indices[:, None, :] == idx[None]).all(-1).any(0)
        idx = idx[keep]
        added[i] = len(idx)
        feats = torch.cat([x.features, x.features.new_ones(len(idx), x.features.shape[1])])
        return spconv.SparseConvTensor(feats, torch.cat([x.indices, idx.int()]), x.spatial_shape, x.batch_size)

    with torch.no_grad():
        hooked = enc(kitti_points, decoder_hook=append_neighbours)
    for i, lv in enumerate(hooked["levels"]):
        assert lv.features.shape[0] == hooked["num_sites"][i] + added[i] > base["levels"][i].features.shape[0]
    assert hooked["point_feat"].shape == base["point_feat"].shape
    # the new sites are seen by the decoder's submanifold convs: features of their neighbours change
    assert not torch.allclose(hooked["levels"][-1].features[:50], base["levels"][-1].features[:50])


def test_non_contiguous_and_int64_coordinates_give_the_same_result(kitti_points):
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs").eval()
    g = kitti_points["grid_coord"]
    strided = torch.zeros(3, len(g), dtype=torch.int64)
    strided[:] = g.T.long()
    other = dict(kitti_points, grid_coord=strided.T)  # a transposed (non-contiguous) int64 view
    assert not other["grid_coord"].is_contiguous()
    with torch.no_grad():
        assert torch.equal(enc.point_features(kitti_points, "last"), enc.point_features(other, "last"))


def test_bad_points_are_named():
    enc = models.create("sparse_unet_xs")
    empty = {"grid_coord": torch.zeros(0, 3, dtype=torch.int32), "feat": torch.zeros(0, 4),
             "offset": torch.tensor([0])}
    with pytest.raises(ValueError, match="empty point set"):
        enc(empty)
    neg = {"grid_coord": torch.tensor([[-1, 0, 0]], dtype=torch.int32), "feat": torch.zeros(1, 4),
           "offset": torch.tensor([1])}
    with pytest.raises(ValueError, match=">= 0"):
        enc(neg)
    bad_offset = {"grid_coord": torch.zeros(3, 3, dtype=torch.int32), "feat": torch.zeros(3, 4),
                  "offset": torch.tensor([2])}
    with pytest.raises(ValueError, match="offset"):
        enc(bad_offset)


def test_second_8x_strides_and_kitti_shape(kitti_points):
    torch.manual_seed(0)
    enc = models.create("second_8x", sparse_shape=[41, 160, 140])
    out = enc(kitti_points)
    shapes = [lv.spatial_shape for lv in out["levels"]]
    assert shapes == [[41, 160, 140], [21, 80, 70], [11, 40, 35], [5, 20, 18]]
    assert out["encoded"].spatial_shape == [2, 20, 18] and out["encoded"].features.shape[1] == 128
    out["encoded"].features.mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    with torch.no_grad():
        enc.eval()
        assert enc.point_features(kitti_points, "all").shape == (kitti_points["feat"].shape[0], 176)
        assert enc.embed(kitti_points).shape == (2, 128)


