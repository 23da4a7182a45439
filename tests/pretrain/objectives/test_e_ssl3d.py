"""E-SSL3D on real KITTI sweep pairs: the loss is its weighted formula, gradients reach what they should, EMA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from modalities.lidar.sweeps import LidarPairs, collate_pairs
from modalities.lidar.voxels import VoxelGrid
from pretrain.config import ConfigError
from pretrain.objectives import create
from pretrain.objectives.e_ssl3d import ESSL3D, estimate_flow, flow_matches, pool_levels, rotation_z
from tests.conftest import shared_data

@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: spconv's CPU path loses badly to oversubscription on a shared 2-core machine (the
    1- and 2-thread correctness of the convolutions is tested in tests/models/test_sparse_conv.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


GRID = VoxelGrid((-20.0, -20.0, -3.0, 20.0, 20.0, 1.8), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def batch():
    ds = LidarPairs(shared_data("3d/semantickitti"), GRID, "train", max_points=6000)
    return collate_pairs([ds[(0, 1)], ds[(1, 2)]])


def _objective(**kw) -> ESSL3D:
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs")
    return create(enc, {"name": "e_ssl3d", "contrast_points": 256, "flow_points": 256, "head_hidden_dim": 32, **kw})


def test_rotation_and_pooling_helpers():
    r = rotation_z(0.3)
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6) and math.isclose(float(r[0, 1]), -math.sin(0.3), rel_tol=1e-6)
    torch.manual_seed(0)
    enc = models.create("sparse_unet_xs").eval()
    pts = {"grid_coord": torch.randint(0, 16, (300, 3), dtype=torch.int32), "feat": torch.randn(300, 4),
           "offset": torch.tensor([100, 300])}
    with torch.no_grad():
        out = enc(pts)
        pooled = pool_levels(out, 2)
        assert torch.allclose(pooled, enc.embed(pts))
        lv = out["levels"][0]
        first = lv.features[:out["num_sites"][0]][lv.indices[:out["num_sites"][0], 0] == 1].mean(0)
        assert torch.allclose(pooled[1, :lv.features.shape[1]], first, atol=1e-6)


def test_flow_estimate_and_matching_on_a_hand_made_scene():
    rng = np.random.default_rng(0)
    wall = np.stack([rng.uniform(0, 10, 500), np.full(500, 5.0), rng.uniform(0, 3, 500)], 1)
    box = rng.uniform(0, 1, (100, 3)) + [3.0, 0.0, 0.0]
    prev = np.concatenate([wall, box])
    cur = np.concatenate([wall, box + [1.0, 0.0, 0.0]])  # the box moved 1 m along x
    flow, valid = estimate_flow(prev, cur, static_radius=0.05, max_flow=2.0)
    assert valid.all() and (flow[:500] == 0).all()
    moving = np.abs(flow[500:]).sum(1) > 0
    assert moving.mean() > 0.3 and (flow[500:][moving][:, 0] > 0).mean() > 0.9
    qi, pj = flow_matches(prev, cur, np.arange(len(cur)), flow, valid, match_radius=0.05)
    assert np.array_equal(qi[:500], pj[:500])  # static wall points match themselves


def test_loss_is_the_weighted_sum_and_gradients_flow(batch):
    obj = _objective(weight_rotation=1.0, weight_contrast=0.01, weight_flow=300.0)
    torch.manual_seed(1)
    out = obj(batch)
    expected = out["rotation"] + 0.01 * out["contrast"] + 300.0 * out["flow"]
    assert torch.isclose(out["loss"], expected, rtol=1e-5)
    assert out["flow_pairs"] > 100 and 0 <= out["flow"] <= 4.0 / obj.encoder.point_dim + 1e-6
    assert out["rotation"] > 0 and out["contrast"] > 0
    out["loss"].backward()
    for part in (obj.encoder, obj.rotation_head, obj.projector, obj.predictor):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())
    assert all(p.grad is None for p in obj.target.parameters())


def test_each_term_alone(batch):
    """With one weight on, the loss is that term; the contrast term equals InfoNCE at its temperature's bound."""
    for name in ("rotation", "contrast", "flow"):
        w = {f"weight_{k}": float(k == name) for k in ("rotation", "contrast", "flow")}
        obj = _objective(**w)
        torch.manual_seed(2)
        out = obj(batch)
        assert torch.isclose(out["loss"], out[name], rtol=1e-6)


def test_ema_moves_the_target_towards_the_encoder(batch):
    obj = _objective(momentum=0.5)
    opt = torch.optim.SGD(obj.parameters(), lr=0.1)
    obj(batch)["loss"].backward()
    opt.step()
    before = [t.clone() for t in obj.target.parameters()]
    obj.on_step_end(0, 10)
    moved = [(t - b).abs().max() for t, b in zip(obj.target.parameters(), before)]
    assert max(moved) > 0
    for t, b, s in zip(obj.target.parameters(), before, obj.encoder.parameters()):
        assert torch.allclose(t, 0.5 * b + 0.5 * s.detach(), atol=1e-6)


def test_monitor_and_embed(batch):
    obj = _objective().eval()
    watched = obj.monitor(batch)
    assert set(watched) == {"rankme", "embed_std", "heldout_rotation_acc"} and watched["rankme"] > 1
    assert 0.0 <= watched["heldout_rotation_acc"] <= 1.0
    assert obj.embed(batch).shape == (2, sum(obj.encoder.level_channels))


def test_second_encoder_serves_the_objective(batch):
    torch.manual_seed(0)
    obj = create(models.create("second_8x"), {"name": "e_ssl3d", "contrast_points": 128, "flow_points": 128,
                                              "head_hidden_dim": 16})
    out = obj(batch)
    assert torch.isfinite(out["loss"])


def test_bad_options_are_named():
    enc = models.create("sparse_unet_xs")
    with pytest.raises(ConfigError, match="objective.rotation_bins"):
        ESSL3D(enc, rotation_bins=1)
    with pytest.raises(ConfigError, match="objective.scale"):
        ESSL3D(enc, scale=(1.1, 0.9))
    with pytest.raises(ConfigError, match="objective.match_radius"):
        ESSL3D(enc, match_radius=0)
