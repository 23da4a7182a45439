"""The simulated room corpus, the dataset built on it, the simulated default probe rooms and the segmentation probe
sets on the real scenes (given as data.probe_data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modalities.base import DataError
from modalities.scenes import build_dataset
from modalities.scenes.probes import (PROBE_DENSITY, PROBE_SEED, probe_targets, semantickitti_probe,
                                      sensaturban_probe)
from modalities.scenes.readers import (SEMANTICKITTI_CLASSES, SENSATURBAN_CLASSES, index_scenes, read_scene,
                                       read_semantickitti)
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
    with pytest.raises(DataError, match="data.probes"):
        probe_targets({"probes": ["nope"]}, None)


def _present(description: str) -> list[str]:
    """The class names a probe description lists after its class count, checked against that count."""
    head, names = description.rsplit(" present: ", 1)
    names = names.split(", ")
    assert head.endswith(f"{len(names)} classes") or head.endswith(f"{len(names)} class")
    return names


def _names(ys, class_names) -> list[str]:
    return [class_names[i] for i in sorted({int(v) for y in ys for v in np.unique(y) if v >= 0})]


def test_default_probe_is_simulated_rooms_with_the_simulator_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    cfg = {"grid_size": 0.1, "probe_max_points": 1500, "probe_rooms": 3}
    probes = probe_targets(cfg, None)
    assert set(probes) == {"rooms"}  # no fixture data read, and a probe section on every install
    ps = probes["rooms"]
    assert ps.task == "segmentation" and len(ps.x_train) == 8 and len(ps.x_test) == 4  # rooms 0-1 / 2, 4 crops each
    assert ps.source == f"simulated rooms (seed {PROBE_SEED}): 3 rooms, 6 classes" and PROBE_SEED != 0
    built = tmp_path / "cache" / "scenes" / "probe_rooms"
    meta = json.loads((built / "corpus.json").read_text())
    assert meta["seed"] == PROBE_SEED and meta["n_rooms"] == 3
    # every probe point carries the simulator's class of that point (rooms 0, 1 train; room 2 tests)
    crops = [(i // 4, x, y) for i, (x, y) in enumerate(zip(ps.x_train, ps.y_train))]
    crops += [(2, x, y) for x, y in zip(ps.x_test, ps.y_test)]
    rooms = {i: simulate_room(PROBE_SEED, i, PROBE_DENSITY) for i in range(3)}
    luts = {i: {tuple(c): l for c, l in zip(r["coord"].tolist(), r["segment"].tolist())} for i, r in rooms.items()}
    for i, x, y in crops:
        assert len(x["coord"]) == len(y) <= 1500
        np.testing.assert_array_equal(y, [luts[i][tuple(c)] for c in x["coord"].tolist()])
        np.testing.assert_array_equal(y, x["segment"].numpy())
    # the crops of the four quadrants together see every class of the simulator
    assert _present(ps.description) == _names(ps.y_train + ps.y_test, CLASSES) == list(CLASSES)
    # none of the probe rooms' points is a point of the embedded training rooms (seed 0)
    probe_pts = np.concatenate([x["coord"].numpy() for x in ps.x_train + ps.x_test]).view("V12").ravel()
    for i in range(16):
        train_pts = np.ascontiguousarray(simulate_room(0, i, 800.0)["coord"]).view("V12").ravel()
        assert len(np.intersect1d(probe_pts, train_pts)) == 0
    stamp = (built / "corpus.json").stat().st_mtime_ns
    again = probe_targets(cfg, None)["rooms"]
    assert (built / "corpus.json").stat().st_mtime_ns == stamp  # cached, not rebuilt
    np.testing.assert_array_equal(again.y_test[0], ps.y_test[0])


def test_default_probes_add_the_labelled_real_data_but_not_the_simulated_training_corpus(tmp_path, monkeypatch,
                                                                                         corpus):
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    kitti = shared_data("3d/semantickitti")
    cfg = {"grid_size": 0.5, "probe_max_points": 1000, "probe_scenes": 3}
    probes = probe_targets(cfg, kitti)  # --data: real labelled frames (3 labelled of 4)
    assert set(probes) == {"rooms", "corpus"}
    ps = probes["corpus"]
    assert ps.source == f"labelled scenes of --data {kitti.resolve()}"
    assert len(ps.x_train) == 2 and len(ps.x_test) == 1
    ids = _present(ps.description)  # no names known for a generic folder: the ids present
    assert ids == [str(i) for i in sorted({int(v) for y in ps.y_train + ps.y_test for v in np.unique(y) if v >= 0})]
    assert set(probe_targets(cfg, corpus)) == {"rooms"}  # the simulated training corpus is never probed
    assert set(probe_targets({**cfg, "probes": ["corpus"]}, None)) == set()


def test_probe_data_gives_the_real_probes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    root = shared_data("3d")
    probes = probe_targets({"probe_data": str(root), "probes": ["rooms", "corpus", "sensaturban", "semantickitti"],
                            "probe_grid_size": {"sensaturban": 0.5, "semantickitti": 1.0}}, None)
    assert set(probes) == {"sensaturban", "semantickitti"}
    assert not (tmp_path / "cache").exists()  # no simulated probe built
    for ps in probes.values():
        assert ps.source == f"--probe-data {root.resolve()}"
    sk = probes["semantickitti"]
    assert _present(sk.description) == _names(sk.y_train + sk.y_test, SEMANTICKITTI_CLASSES)
    assert len(_present(sk.description)) < len(SEMANTICKITTI_CLASSES)  # not "19 classes"
    su = probes["sensaturban"]
    assert _present(su.description) == _names(su.y_train + su.y_test, SENSATURBAN_CLASSES)
    # a folder of labelled scenes without those layouts: its own scenes
    kitti = shared_data("3d/semantickitti")
    probes = probe_targets({"probe_data": str(kitti), "grid_size": 1.0, "probe_scenes": 3}, None)
    assert set(probes) == {"corpus"} and probes["corpus"].source == f"--probe-data {kitti.resolve()}"


def test_bad_probe_options_are_one_line(tmp_path):
    for key in ("probe_root", "probe_path"):
        with pytest.raises(DataError, match=rf"^data.{key}: renamed; .*data.probe_data"):
            probe_targets({key: "/somewhere"}, None)
        with pytest.raises(DataError, match=rf"^data.{key}: renamed"):
            build_dataset({"path": str(tmp_path), key: "/somewhere"}, "train", 2)
    with pytest.raises(DataError, match=r"^data.probe_data: .*missing is not a folder"):
        probe_targets({"probe_data": str(tmp_path / "missing")}, None)
    with pytest.raises(DataError, match=r"^data.probe_data: .*no scenes found"):
        probe_targets({"probe_data": str(tmp_path)}, None)
