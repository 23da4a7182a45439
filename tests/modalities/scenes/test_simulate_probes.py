"""The simulated room corpus, the dataset built on it, and the segmentation probe sets on the real scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modalities.base import DataError
from modalities.scenes import build_dataset
from modalities.scenes.probes import probe_targets, semantickitti_probe, sensaturban_probe
from modalities.scenes.readers import index_scenes, read_scene, read_semantickitti
from modalities.scenes.simulate import CLASSES, simulate_corpus, simulate_room
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return simulate_corpus(tmp_path_factory.mktemp("rooms"), n_rooms=4, density=300.0)


def test_corpus_is_built_once_and_read_back(corpus):
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["n_rooms"] == 4 and meta["classes"] == list(CLASSES)
    paths = index_scenes(corpus)
    assert [p.name for p in paths] == [f"room_{i:04d}" for i in range(4)]
    s = read_scene(paths[1])
    room = simulate_room(0, 1, 300.0)
    np.testing.assert_array_equal(s.coord, room["coord"])
    np.testing.assert_array_equal(s.segment, room["segment"])
    stamp = (corpus / "corpus.json").stat().st_mtime_ns
    simulate_corpus(corpus, n_rooms=4, density=300.0)
    assert (corpus / "corpus.json").stat().st_mtime_ns == stamp  # not rebuilt


def test_rooms_are_physically_plausible():
    room = simulate_room(0, 7, 400.0)
    seg, z = room["segment"], room["coord"][:, 2]
    assert set(np.unique(seg)) >= {0, 1, 2, 3, 4}
    assert np.abs(z[seg == 0]).max() < 0.02  # floor at 0
    tops = z[(seg == 2) & (room["normal"][:, 2] > 0.9)]
    assert 0.68 < np.median(tops) < 0.8  # table tops at table height
    assert (room["color"] >= 0).all() and (room["color"] <= 1).all()
    np.testing.assert_allclose(np.linalg.norm(room["normal"], axis=1), 1.0, atol=1e-6)
    assert not np.array_equal(simulate_room(0, 7, 400.0)["coord"][:5], simulate_room(0, 8, 400.0)["coord"][:5])


def test_dataset_two_views_and_crops(corpus):
    cfg = {"path": str(corpus), "grid_size": 0.1, "val_fraction": 0.25, "augment": {"max_points": 3000}}
    train, val = build_dataset(cfg, "train", 2), build_dataset(cfg, "val", 0)
    assert len(train) == 3 and len(val) == 1
    a = train[(0, 123)]
    assert set(a) >= {"view_a", "view_b", "scene_points"} and len(a["view_a"]["coord"]) <= 3000
    assert np.array_equal(a["view_a"]["coord"].numpy(), train[(0, 123)]["view_a"]["coord"].numpy())  # seeded
    v = val[0]
    assert v["feat"].shape[1] == 6 and v["segment"].shape == v["coord"].shape[:1]
    with pytest.raises(DataError, match="data.augment.bogus"):
        build_dataset({**cfg, "augment": {"bogus": 1}}, "train", 2)


def test_sensaturban_probe_split_is_spatial_and_labels_are_the_files():
    path = shared_data("3d/sensaturban/birmingham_block_0_0002.bin")
    ps = sensaturban_probe(path, grid_size=0.1)
    assert ps.task == "segmentation" and len(ps.x_train) == len(ps.x_test) == 1
    tr, te = ps.x_train[0]["coord"].numpy(), ps.x_test[0]["coord"].numpy()
    ax = int(np.argmax([min(tr[:, a].max(), te[:, a].max()) - max(tr[:, a].min(), te[:, a].min()) < 0
                        for a in (0, 1)]))  # the halves do not overlap along the split axis
    assert tr[:, ax].max() < te[:, ax].min() or te[:, ax].max() < tr[:, ax].min()
    s = read_scene(path)
    lut = {tuple(c): l for c, l in zip(s.coord.tolist(), s.segment.tolist())}
    for c, y in zip(tr[:200].tolist(), ps.y_train[0][:200]):
        assert lut[tuple(c)] == y
    both = set(np.unique(ps.y_train[0])) & set(np.unique(ps.y_test[0]))
    assert len(both) >= 5


def test_semantickitti_probe_frames():
    root = shared_data("3d/semantickitti/sequences/00/velodyne")
    ps = semantickitti_probe(root, grid_size=0.5)
    assert len(ps.x_train) == 2 and len(ps.x_test) == 1
    s = read_semantickitti(root / "000002.bin")
    assert set(np.unique(ps.y_test[0])) <= set(np.unique(s.segment))
    assert (ps.x_test[0]["feat"][:, :3] == 0).all()
    probes = probe_targets({"probes": ["sensaturban", "semantickitti"],
                            "probe_grid_size": {"sensaturban": 0.5, "semantickitti": 1.0}}, None)
    assert set(probes) == {"sensaturban", "semantickitti"}
    with pytest.raises(DataError, match="data.probes"):
        probe_targets({"probes": ["nope"]}, None)
