"""Normals, grid sampling, two views, patch masks and collation of point dictionaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalities.scenes.points import (ViewAugment, collate_points, estimate_normals, grid_coords, grid_sample,
                                      patch_mask, point_dict, prepare_scene, subset_points, two_views)
from modalities.scenes.readers import Scene, read_scene
from modalities.scenes.simulate import CLASSES, simulate_room
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def room():
    return simulate_room(seed=3, index=0, density=600.0)


def test_estimated_normals_match_the_true_ones_and_face_the_room(room):
    """Floor and walls: the estimated direction agrees with the exact one (|cos| > 0.9) on >= 95 % of points and,
    where it does, the sign is the true (room-facing) one on every point; every normal faces the viewpoint.
    Furniture faces turned away from the room centre are flipped towards it (the documented limit of the rule)."""
    coord, true = room["coord"], room["normal"]
    centre = (coord.min(0) + coord.max(0)) / 2
    est = estimate_normals(coord, radius=0.1, viewpoint=centre)
    cos = (est * true).sum(1)
    for cls in ("floor", "wall"):
        m = room["segment"] == CLASSES.index(cls)
        good = np.abs(cos[m]) > 0.9
        assert good.mean() > 0.95, cls
        assert (cos[m][good] > 0).all(), cls
    assert (((centre[None] - coord) * est).sum(1) >= -1e-6).all()
    floor = room["segment"] == CLASSES.index("floor")
    assert (est[floor, 2] > 0.9).mean() > 0.95  # floors point up
    np.testing.assert_allclose(np.linalg.norm(est, axis=1), 1.0, atol=1e-5)
    up = estimate_normals(coord, radius=0.1, up=True)
    assert (up[:, 2] >= 0).all()


def test_lidar_normals_face_the_sensor():
    s = read_scene(shared_data("3d/semantickitti/sequences/00/velodyne") / "000002.bin")
    p = prepare_scene(s, 0.3)
    assert ((p.normal * (-p.coord)).sum(1) >= -1e-6).all()


def test_grid_sample_keeps_one_point_per_voxel():
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 1, (5000, 3))
    keep, inv = grid_sample(coord, 0.1)
    gc = grid_coords(coord, 0.1)
    assert len({tuple(r) for r in gc[keep]}) == len(keep) == len({tuple(r) for r in gc})
    np.testing.assert_array_equal(gc[keep][inv], gc)  # every point maps to its own voxel's representative
    keep_r, inv_r = grid_sample(coord, 0.1, rng)
    np.testing.assert_array_equal(gc[keep_r][inv_r], gc)
    assert not np.array_equal(np.sort(keep_r), np.sort(keep))


def test_two_views_overlap_and_index_their_scene(room):
    scene = prepare_scene(Scene(room["coord"], room["color"], room["normal"], room["segment"], path="room"), 0.05)
    still = ViewAugment(rotate=0, tilt=0, scale=(1, 1), flip=0, jitter=0, colour_jitter=(0, 0), colour_noise=0,
                        crop=(0.6, 0.8), max_points=100000)
    a, b = two_views(scene, still, np.random.default_rng(0))
    for v in (a, b):
        np.testing.assert_allclose(v["coord"].numpy(), scene.coord[v["index"].numpy()], atol=1e-6)
        np.testing.assert_allclose(v["feat"][:, :3].numpy(), scene.color[v["index"].numpy()] * 2 - 1, atol=1e-6)
        assert 0.6 * len(scene.coord) - 1 <= len(v["coord"]) <= 0.8 * len(scene.coord) + 1
        assert int(v["grid_coord"].min()) == 0
    shared = np.intersect1d(a["index"].numpy(), b["index"].numpy())
    assert 0.2 * len(scene.coord) < len(shared) < min(len(a["coord"]), len(b["coord"])) + 1
    # a rigid augmentation keeps distances and rotates normals with the points
    a2, _ = two_views(scene, ViewAugment(max_points=100000), np.random.default_rng(0))
    i, j = 0, len(a2["coord"]) - 1
    d_aug = float((a2["coord"][i] - a2["coord"][j]).norm())
    d_raw = float(np.linalg.norm(scene.coord[a2["index"][i]] - scene.coord[a2["index"][j]]))
    assert 0.85 * d_raw <= d_aug <= 1.15 * d_raw
    np.testing.assert_allclose(a2["feat"][:, 3:].norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_patch_mask_statistics_on_a_hand_built_scene():
    """A 4 x 4 x 1 block of 8-voxel patches (16 patches), 2 points per voxel in a few voxels of each patch."""
    pts = []
    for px in range(4):
        for py in range(4):
            for k in range(3):
                pts += [[px * 8 + k, py * 8 + 2 * k, 1]] * 2
    gc = torch.tensor(pts, dtype=torch.int32)
    batch_gc = torch.cat([gc, gc[:48]])  # a second scene with 8 patches
    offset = torch.tensor([len(gc), len(gc) + 48])
    m = patch_mask(batch_gc, offset, 8, 0.4, [11, 12])
    patches = [tuple(r) for r in (batch_gc.long() // 8).tolist()]
    for lo, hi, n_patches in ((0, 96, 16), (96, 144, 8)):
        per_patch = {}
        for i in range(lo, hi):
            per_patch.setdefault(patches[i], set()).add(bool(m[i]))
        assert all(len(v) == 1 for v in per_patch.values())  # a patch is masked whole or not at all
        assert sum(v == {True} for v in per_patch.values()) == round(0.4 * n_patches)
    assert torch.equal(m, patch_mask(batch_gc, offset, 8, 0.4, [11, 12]))  # a function of the seed
    masks = torch.stack([patch_mask(gc, offset[:1], 8, 0.4, [s]) for s in range(200)]).float()
    per_point = masks.mean(0)  # every patch is equally likely to be masked
    assert float(per_point.min()) > 0.3 and float(per_point.max()) < 0.5
    one = patch_mask(gc[:1], torch.tensor([1]), 8, 0.4, [0])
    assert not bool(one.any())  # a single patch is never masked whole


def test_collate_and_subset_keep_scenes_apart(room):
    scene = prepare_scene(Scene(room["coord"], room["color"], room["normal"], room["segment"], path="room"), 0.1)
    s1 = {**dict(zip(("view_a", "view_b"), two_views(scene, ViewAugment(), np.random.default_rng(1)))),
          "scene_points": len(scene.coord), "seed": 5}
    s2 = {**dict(zip(("view_a", "view_b"), two_views(scene, ViewAugment(), np.random.default_rng(2)))),
          "scene_points": len(scene.coord), "seed": 6}
    b = collate_points([s1, s2])
    na = len(s1["view_a"]["coord"])
    assert b["view_a"]["offset"].tolist() == [na, na + len(s2["view_a"]["coord"])]
    assert torch.equal(b["view_a"]["index"][na:], s2["view_a"]["index"] + len(scene.coord))
    assert b["seed"].tolist() == [5, 6]
    keep = torch.zeros(len(b["view_a"]["coord"]), dtype=torch.bool)
    keep[:3] = True
    keep[na:na + 5] = True
    sub = subset_points(b["view_a"], keep)
    assert sub["offset"].tolist() == [3, 8] and len(sub["feat"]) == 8
    single = collate_points([point_dict(scene.coord[:10], scene.color[:10], scene.normal[:10], 0.1, scene.segment[:10]),
                             point_dict(scene.coord[:4], None, scene.normal[:4], 0.1)][:1])
    assert single["offset"].tolist() == [10] and single["segment"].shape == (10,)
