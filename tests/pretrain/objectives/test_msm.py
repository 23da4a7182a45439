"""Masked Scene Modeling: masked sites, cross-view targets and the loss against their definitions on a hand-built
scene; real training steps on a simulated room; the CLI loop end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from models.sparse_voxels import lookup_sites
from modalities.scenes.points import ViewAugment, collate_points, prepare_scene, subset_points, two_views
from modalities.scenes.readers import Scene
from modalities.scenes.simulate import simulate_room
from pretrain.config import ConfigError
from pretrain.objectives.msm import MSM, cross_view_targets, level_sites, masked_sites

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("sparse_unet", in_channels=6, channels=[8, 8, 16, 16, 16], enc_blocks=1, dec_blocks=1)


def _hand_scene() -> dict:
    """Two scenes of lattice points: a 24 x 24 x 3 slab (one point per voxel, two points in some voxels) and a
    16 x 8 x 2 one; both views are the scene itself, so every point is shared."""
    rng = np.random.default_rng(0)
    dicts = []
    base = 0
    for ext in ((24, 24, 3), (16, 8, 2)):
        g = np.stack(np.meshgrid(*[np.arange(e) for e in ext], indexing="ij"), -1).reshape(-1, 3)
        g = np.concatenate([g, g[::7]])  # some voxels hold two points
        n = len(g)
        feat = rng.normal(size=(n, 6)).astype(np.float32)
        dicts.append({"coord": torch.from_numpy(g.astype(np.float32) * 0.1), "grid_coord": torch.from_numpy(g.astype(np.int32)),
                      "feat": torch.from_numpy(feat), "index": torch.arange(n) + base})
        base += n
    out = {k: torch.cat([d[k] for d in dicts]) for k in dicts[0]}
    out["offset"] = torch.cumsum(torch.tensor([len(d["coord"]) for d in dicts]), 0)
    return out


def test_masked_sites_are_the_voxels_without_visible_points():
    rng = np.random.default_rng(1)
    g = torch.from_numpy(rng.integers(0, 20, (400, 3)).astype(np.int32))
    pts = {"grid_coord": g, "offset": torch.tensor([250, 400])}
    masked = torch.from_numpy(rng.uniform(size=400) < 0.5)
    for stride in (1, 2, 4, 8):
        sites = level_sites(pts, stride)
        vis = torch.unique(sites[~masked], dim=0)
        got, slot = masked_sites(sites, masked, vis.int())
        want = {tuple(s) for s in sites[masked].tolist()} - {tuple(s) for s in vis.tolist()}
        assert {tuple(s) for s in got.tolist()} == want and len(got) == len(want)
        for i in range(400):
            if tuple(sites[i].tolist()) in want:
                assert bool(masked[i]) and got[slot[i]].tolist() == sites[i].tolist()
            else:
                assert slot[i] == -1


def test_cross_view_targets_are_means_over_shared_points():
    rng = np.random.default_rng(2)
    index_v = torch.from_numpy(rng.permutation(50)[:30])
    index_w = torch.from_numpy(rng.permutation(50)[:35])
    slot = torch.from_numpy(rng.integers(-1, 6, 30))
    teacher_w = torch.from_numpy(rng.normal(size=(35, 4)))
    t, valid = cross_view_targets(slot, 6, index_v, index_w, teacher_w)
    for u in range(6):
        rows = [int(np.flatnonzero(index_w.numpy() == index_v[p].item())[0]) for p in range(30)
                if slot[p] == u and index_v[p].item() in index_w.tolist()]
        assert bool(valid[u]) == bool(rows)
        if rows:
            torch.testing.assert_close(t[u], teacher_w[rows].mean(0))


def test_per_level_targets_and_loss_match_their_definition_on_a_hand_built_scene():
    obj = MSM(_encoder(), mask_ratio=0.4, patch_size=8)
    assert obj.strides == (8, 4, 2, 1)
    pts = _hand_scene()
    seeds = torch.tensor([3, 4])
    batch = {"view_a": pts, "view_b": {k: v.clone() for k, v in pts.items()}, "seed": seeds}
    masked = obj.mask(pts, seeds, 0)
    # patches of 8 voxels: the first scene has 3 x 3 x 1 = 9 patches -> round(3.6) = 4 masked; the second 2 x 1 x 1
    patches0 = {tuple(r) for r in (pts["grid_coord"][:pts["offset"][0]][masked[:pts["offset"][0]]].long() // 8).tolist()}
    assert len(patches0) == 4
    preds, slots, dropped = obj.student_predictions(pts, masked)
    assert dropped == 0.0
    # the student sees visible points only: its level sites are the visible points' sites
    visible = subset_points(pts, ~masked)
    out_vis = obj.encoder(visible)
    teacher_out = obj.teacher(pts)
    for lvl, s in enumerate(obj.strides):
        sites = level_sites(pts, s)
        vis_sites = {tuple(r) for r in sites[~masked].tolist()}
        assert {tuple(r) for r in out_vis["levels"][lvl].indices.long().tolist()} == vis_sites
        want = {tuple(r) for r in sites[masked].tolist()} - vis_sites  # voxels of masked patches
        assert len(preds[lvl]) == len(want) > 0
        # identical views: the target of a masked site is LN(teacher feature of that site)
        feats = obj.teacher_point_features(batch["view_b"])[lvl]
        t, valid = cross_view_targets(slots[lvl], len(preds[lvl]), pts["index"], pts["index"], feats)
        assert bool(valid.all())
        got_sites, _ = masked_sites(sites, masked, out_vis["levels"][lvl].indices)
        lv = teacher_out["levels"][lvl]
        rows = lookup_sites(got_sites, lv.indices[:teacher_out["num_sites"][lvl]], lv.spatial_shape)
        direct = F.layer_norm(lv.features[rows], lv.features.shape[-1:])
        torch.testing.assert_close(t, direct, atol=1e-5, rtol=1e-5)
    # the loss is the mean over levels of the two directions' mean squared errors
    with torch.no_grad():
        out = obj(batch)
        per_level = torch.zeros(4)
        for stream, (v, w) in enumerate(((batch["view_a"], batch["view_b"]), (batch["view_b"], batch["view_a"]))):
            m = obj.mask(v, seeds, stream)
            p, sl, _ = obj.student_predictions(v, m)
            tf = obj.teacher_point_features(w)
            for lvl in range(4):
                t, valid = cross_view_targets(sl[lvl], len(p[lvl]), v["index"], w["index"], tf[lvl])
                per_level[lvl] += ((p[lvl] - t) ** 2)[valid].mean() / 2
    torch.testing.assert_close(out["loss"], per_level.mean(), atol=1e-5, rtol=1e-5)
    for lvl in range(4):
        torch.testing.assert_close(out[f"loss_l{lvl}"], per_level[lvl], atol=1e-5, rtol=1e-5)


def test_training_steps_reduce_the_loss_and_train_mask_tokens():
    room = simulate_room(0, 2, 300.0)
    scene = prepare_scene(Scene(room["coord"], room["color"], room["normal"], room["segment"], path="room"), 0.08)
    aug = ViewAugment(max_points=2500)
    samples = []
    for i in range(2):
        a, b = two_views(scene, aug, np.random.default_rng(i))
        samples.append({"view_a": a, "view_b": b, "scene_points": len(scene.coord), "seed": 10 + i})
    batch = collate_points(samples)
    obj = MSM(_encoder(), patch_size=8, ema=(0.9, 0.9))
    teacher0 = [p.clone() for p in obj.teacher.parameters()]
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(12):
        out = obj(batch)
        out["loss"].backward()
        if step == 0:
            assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in obj.mask_tokens)
            assert all(p.grad is None for p in obj.teacher.parameters())
        opt.step()
        opt.zero_grad()
        obj.on_step_end(step + 1, 12)
        losses.append(float(out["loss"].detach()))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])
    assert any(not torch.equal(a, b) for a, b in zip(teacher0, obj.teacher.parameters()))
    assert obj.export_encoder() is obj.teacher
    assert obj.embed(batch["view_a"]).shape == (2, sum(obj.encoder.level_channels))


def test_views_without_shared_points_give_a_zero_loss_that_backpropagates():
    obj = MSM(_encoder(), patch_size=8)
    pts = _hand_scene()
    other = {**{k: v.clone() for k, v in pts.items()}, "index": pts["index"] + 10_000}  # no point in common
    out = obj({"view_a": pts, "view_b": other, "seed": torch.tensor([1, 2])})
    assert float(out["loss"]) == 0.0 and float(out["target_sites"]) == 0.0
    out["loss"].backward()  # the loop can always call backward


def test_non_unet_encoder_is_refused():
    with pytest.raises(ConfigError, match="sparse UNet"):
        MSM(models.create("vit1d_xs"))
    with pytest.raises(ConfigError, match="mask_ratio"):
        MSM(_encoder(), mask_ratio=1.0)


@pytest.mark.slow
def test_cli_pretrains_scenes_end_to_end(tmp_path):
    args = [sys.executable, "-m", "pretrain", "scenes", "--max-steps", "4", "--no-eval", "--quiet",
            "--set", "train.log_every=1", "--set", "train.rankme_every=2", "--set", "train.rankme_samples=3",
            "--set", "data.augment.max_points=1500", "--set", "data.grid_size=0.1"]
    env = {**os.environ, "MODALITIES_CACHE": str(tmp_path / "cache"), "MODALITIES_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from pretrain.loop import read_metrics

    run = tmp_path / "run"
    rows = read_metrics(run)
    assert rows[-1]["step"] == 4 and all(np.isfinite(r["loss"]) for r in rows)
    assert "loss_l3" in rows[-1] and "rankme" in rows[-1]
    enc = models.load_pretrained(run / "encoder")
    assert enc.level_channels == (48, 32, 24, 16)
