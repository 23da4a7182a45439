"""Frame indexing and pairs, voxel presets, the street simulator, the simulated default probe and the SemanticKITTI
probe (data.probe_data or a labelled --data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalities.base import DataError
from modalities.lidar import MODALITY
from modalities.lidar.probes import PROBE_SEED, PROBE_STREETS, probe_targets, semantickitti_probe
from modalities.lidar.readers import read_semantickitti_labels, read_sweep
from modalities.lidar.simulate import beam_directions, simulate_corpus, simulate_sequence
from modalities.lidar.sweeps import LidarPairs, collate_pairs, frame_pairs, index_frames
from modalities.lidar.options import grid_from_config
from modalities.lidar.voxels import PRESETS, VoxelGrid, crop_to_range, point_dict, voxelize
from pretrain.objectives.e_ssl3d import estimate_flow
from tests.conftest import shared_data

SMALL = VoxelGrid((-25.6, -25.6, -3.0, 25.6, 25.6, 1.8), (0.2, 0.2, 0.2))


@pytest.fixture(scope="module")
def kitti_root():
    return shared_data("3d/semantickitti")


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    return simulate_corpus(tmp_path_factory.mktemp("sim"), n_sequences=1, n_frames=4, seed=3, n_azimuth=512)


def test_presets_match_openpcdet_shapes():
    assert PRESETS["kitti"].sparse_shape == (41, 1600, 1408)
    assert PRESETS["nuscenes"].sparse_shape == (41, 1024, 1024)
    assert PRESETS["waymo"].sparse_shape == (41, 1504, 1504)
    g = grid_from_config({"preset": "kitti", "voxel_size": 0.2})
    assert g.voxel_size == (0.2, 0.2, 0.2) and g.point_range == PRESETS["kitti"].point_range
    with pytest.raises(DataError, match="data.preset: unknown preset 'lyft'"):
        grid_from_config({"preset": "lyft"})
    with pytest.raises(DataError, match="data.point_range"):
        grid_from_config({"point_range": [0, 0, 0, -1, 1, 1]})


def test_voxelize_is_floor_of_offset_over_size(kitti_root):
    xyz = read_sweep(kitti_root / "sequences/00/velodyne/000000.bin").xyz
    keep = crop_to_range(xyz, PRESETS["kitti"])
    xyz = xyz[keep]
    g = voxelize(torch.from_numpy(xyz), PRESETS["kitti"]).numpy()
    ref = np.floor((xyz.astype(np.float64) - [0.0, -40.0, -3.0]) / [0.05, 0.05, 0.1]).astype(np.int64)
    assert g.dtype == np.int32 and (np.abs(g - ref) <= 1).all() and (g == ref).mean() > 0.999  # float32 rounding
    assert (g >= 0).all() and (g < np.array(PRESETS["kitti"].grid_size)).all()
    pts = point_dict([(torch.from_numpy(xyz), torch.zeros(len(xyz)))], PRESETS["kitti"])
    assert pts["feat"].shape == (len(xyz), 4) and pts["feat"][:, :3].abs().max() <= 1.0 + 1e-6
    assert pts["offset"].tolist() == [len(xyz)]


def test_kitti_frames_pairs_and_split(kitti_root):
    frames = index_frames(kitti_root)
    assert [f.path.name for f in frames] == [f"{k:06d}.bin" for k in range(4)]
    assert [f.label is not None for f in frames] == [True, True, True, False]
    assert all(f.pose is not None for f in frames) and np.allclose(frames[0].pose, np.eye(4), atol=1e-9)
    assert frame_pairs(frames) == [(0, 1), (1, 2), (2, 3)]
    train = LidarPairs(kitti_root, SMALL, "train", max_points=5000)
    val = LidarPairs(kitti_root, SMALL, "val")
    assert train.pairs == [(0, 1), (1, 2)] and val.pairs == [(2, 3)]
    a, b = train[(0, 7)], train[(0, 7)]
    assert torch.equal(a["coord"], b["coord"]) and len(a["coord"]) == 5000  # the seed fixes the subsample
    assert crop_to_range(a["prev_coord"].numpy(), SMALL).all() and a["segment"].shape == (5000,)
    batch = collate_pairs([a, train[(1, 3)]])
    assert batch["offset"].tolist() == [5000, 10000] and batch["prev_offset"].tolist() == [5000, 10000]
    assert "segment" in batch


def test_previous_sweep_is_moved_into_the_current_frame(kitti_root):
    """Static points of the previous sweep, moved by the poses, lie on the current sweep."""
    from scipy.spatial import cKDTree

    item = LidarPairs(kitti_root, SMALL, "train")[0]  # pair (0, 1), every point in range
    cur = read_sweep(kitti_root / "sequences/00/velodyne/000001.bin").xyz
    flow, valid = estimate_flow(item["prev_coord"].double().numpy(), cur.astype(np.float64), 0.3, 2.0)
    static = (np.abs(flow).sum(1) == 0).mean()
    assert static > 0.9
    d_ego = np.median(cKDTree(cur).query(item["prev_coord"].numpy())[0])
    assert d_ego < 0.1


def test_simulator_writes_semantickitti_layout_with_labels_and_true_flow(sim_root):
    seq = sim_root / "sequences" / "00"
    s = read_sweep(seq / "velodyne" / "000001.bin")
    cls, inst = read_semantickitti_labels(seq / "labels" / "000001.label", len(s))
    assert 15000 < len(s) <= len(beam_directions(64, 512))
    assert {"road", "sidewalk", "building", "car"} <= {_class_name(c) for c in np.unique(cls[cls >= 0])}
    f = np.load(seq / "flow" / "000001.npz")
    raw = np.fromfile(seq / "labels" / "000001.label", dtype=np.uint32) & 0xFFFF
    assert set(np.unique(raw[f["index"]])) <= {252, 254}  # only moving cars and pedestrians carry flow
    speeds = np.linalg.norm(f["flow"], axis=1) / 0.1
    assert len(speeds) and 0.5 < speeds.min() and speeds.max() < 15
    # the ego moves 0.8 m per frame: its pose file says so
    frames = index_frames(sim_root)
    assert abs(np.linalg.norm(frames[1].pose[:3, 3] - frames[0].pose[:3, 3]) - 0.8) < 0.1
    assert simulate_corpus(sim_root, n_sequences=1, n_frames=4, seed=3, n_azimuth=512) == sim_root  # built once


def test_nearest_neighbour_flow_follows_moving_objects_in_the_simulator(sim_root):
    pairs = LidarPairs(sim_root, SMALL, "train")
    item = pairs[0]
    prev, cur = item["prev_coord"].double().numpy(), item["coord"].double().numpy()
    true = item["prev_flow"].double().numpy()
    flow, valid = estimate_flow(prev, cur, 0.3, 2.0)
    true_moving = np.linalg.norm(true, axis=1) > 0.3
    flagged = (np.abs(flow).sum(1) > 0) & valid
    both = true_moving & flagged
    assert both.sum() > 100
    # where it sees motion, the nearest-neighbour flow is closer to the truth than "static" (a crude estimate:
    # surfaces sliding along themselves, e.g. a car's flank, look static to it)
    err_est = np.median(np.linalg.norm(flow[both] - true[both], axis=1))
    err_zero = np.median(np.linalg.norm(true[both], axis=1))
    assert err_est < 0.8 * err_zero, (err_est, err_zero)
    static = np.linalg.norm(true, axis=1) == 0
    assert (~flagged[static]).mean() > 0.8  # most of the static world is explained by the ego poses


def _class_name(c: int) -> str:
    from modalities.lidar.readers import CLASS_NAMES

    return CLASS_NAMES[c]


def test_semantickitti_probe_frames_and_labels(kitti_root):
    ps = semantickitti_probe(kitti_root, SMALL)
    assert ps.task == "segmentation" and len(ps.x_train) == 2 and len(ps.x_test) == 1
    for pts, y in zip(ps.x_train + ps.x_test, ps.y_train + ps.y_test):
        assert len(pts["coord"]) == len(y) and pts["grid_coord"].dtype == torch.int32
        assert (y >= -1).all() and (y < 19).all() and len(torch.unique(y[y >= 0])) >= 8


def _present(description: str) -> list[str]:
    """The class names a probe description lists, checked against the count it gives."""
    head, names = description.rsplit(" classes present: ", 1)
    names = names.split(", ")
    assert head.endswith(f"; {len(names)}")
    return names


def _names(ys) -> list[str]:
    from modalities.lidar.readers import CLASS_NAMES

    return [CLASS_NAMES[i] for i in sorted({int(v) for y in ys for v in torch.unique(y) if v >= 0})]


def test_default_probe_is_simulated_streets_with_the_simulator_labels(tmp_path, monkeypatch):
    from modalities.lidar.readers import LEARNING_MAP

    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    cfg = {"point_range": list(SMALL.point_range), "voxel_size": 0.2}
    probes = probe_targets(cfg, None)
    assert set(probes) == {"simulated_streets"}  # no fixture data read, and a probe section on every install
    ps = probes["simulated_streets"]
    assert len(ps.x_train) == PROBE_STREETS - 1 and len(ps.x_test) == 1 and PROBE_SEED != 0
    names = _present(ps.description)
    assert names == _names(ps.y_train + ps.y_test) and len(names) < 19  # the classes present, not "19 classes"
    assert {"car", "road", "sidewalk", "building"} <= set(names)
    assert ps.source == f"simulated streets (seed {PROBE_SEED}): {PROBE_STREETS} sweeps, {len(names)} classes"
    built = tmp_path / "cache" / "lidar" / "probe_streets"
    assert json.loads((built / "corpus.json").read_text())["seed"] == PROBE_SEED
    # the probe's points and labels are the simulator's: street s is simulate_sequence(seed 1000 * PROBE_SEED + s)
    lut = np.full(max(LEARNING_MAP) + 1, -1, np.int64)
    for k, v in LEARNING_MAP.items():
        lut[k] = v
    for s, (pts, y) in enumerate(zip(ps.x_train + ps.x_test, ps.y_train + ps.y_test)):
        simulate_sequence(tmp_path / f"again{s}", seed=1000 * PROBE_SEED + s, n_frames=1)
        xyzi = np.fromfile(tmp_path / f"again{s}" / "velodyne" / "000000.bin", np.float32).reshape(-1, 4)
        raw = np.fromfile(tmp_path / f"again{s}" / "labels" / "000000.label", np.uint32) & 0xFFFF
        keep = crop_to_range(xyzi[:, :3], SMALL)
        np.testing.assert_array_equal(pts["coord"].numpy(), xyzi[keep, :3])
        np.testing.assert_array_equal(y.numpy(), lut[raw[keep]])
    # the simulated training streets (sequence seeds 0..3) are other streets
    train = simulate_corpus(tmp_path / "train", n_sequences=1, n_frames=1, seed=0)
    first = np.fromfile(train / "sequences/00/velodyne/000000.bin", np.float32).reshape(-1, 4)[:, :3].copy()
    probe_pts = np.concatenate([p["coord"].numpy() for p in ps.x_train + ps.x_test])
    shared = np.intersect1d(probe_pts.view("V12").ravel(), first.view("V12").ravel())
    assert len(shared) < 1e-4 * len(first)  # a rare float32 coincidence of one beam's range, not the same street
    stamp = (built / "corpus.json").stat().st_mtime_ns
    probe_targets(cfg, None)
    assert (built / "corpus.json").stat().st_mtime_ns == stamp  # cached, not rebuilt


def test_probe_data_and_labelled_data_give_the_semantickitti_probe(kitti_root, sim_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    cfg = {"point_range": list(SMALL.point_range), "voxel_size": 0.4, "max_points": 3000}
    probes = probe_targets({**cfg, "probe_data": str(kitti_root)}, None)
    assert set(probes) == {"semantickitti_points"} and not (tmp_path / "cache").exists()
    ps = probes["semantickitti_points"]
    assert ps.source == f"--probe-data {kitti_root.resolve()}"
    assert _present(ps.description) == _names(ps.y_train + ps.y_test) and len(_present(ps.description)) < 19
    # no probe_data: the simulated probe, plus the labelled frames of a real --data (the same frames)
    probes = probe_targets(cfg, kitti_root)
    assert set(probes) == {"simulated_streets", "semantickitti_points"}
    assert probes["semantickitti_points"].source == f"labelled frames of --data {kitti_root.resolve()}"
    for a, b in zip(probes["semantickitti_points"].y_test, ps.y_test):
        assert torch.equal(a, b)
    assert set(probe_targets(cfg, sim_root)) == {"simulated_streets"}  # a simulated corpus is not probed twice


def test_bad_probe_options_are_one_line(tmp_path, sim_root):
    for key in ("probe_path", "probe_root"):
        with pytest.raises(DataError, match=rf"^data.{key}: renamed; .*data.probe_data"):
            probe_targets({key: str(tmp_path)}, None)
        with pytest.raises(DataError, match=rf"^data.{key}: renamed"):
            MODALITY.build_dataset({"path": str(sim_root), key: str(tmp_path)}, "train", 0)
    with pytest.raises(DataError, match=r"^data.probe_data: .*nowhere is not a folder"):
        probe_targets({"probe_data": str(tmp_path / "nowhere")}, None)
    unlabelled = tmp_path / "unlabelled"
    (unlabelled / "sequences/00/velodyne").mkdir(parents=True)
    for k in range(3):  # simulated sweeps without their .label files
        name = f"sequences/00/velodyne/{k:06d}.bin"
        (unlabelled / name).write_bytes((sim_root / name).read_bytes())
    with pytest.raises(DataError, match=r"^data.probe_data: .*unlabelled holds fewer than 3 labelled frames"):
        probe_targets({"probe_data": str(unlabelled)}, None)


def test_modality_contract(kitti_root, sim_root):
    ds = MODALITY.build_dataset({"path": str(kitti_root), "voxel_size": 0.2}, "train", 0)
    assert len(ds) == 2
    with pytest.raises(DataError, match="without augmented views"):
        MODALITY.build_dataset({"path": str(kitti_root)}, "train", 2)
    with pytest.raises(DataError, match="no LiDAR sweeps"):
        index_frames(sim_root / "sequences" / "00" / "flow")


def test_nan_points_are_dropped_with_one_warning_when_pretraining(tmp_path, kitti_root):
    a = np.fromfile(kitti_root / "sequences/00/velodyne/000000.bin", dtype=np.float32).reshape(-1, 4)[:3000].copy()
    a.tofile(tmp_path / "a_000.bin")
    a[5, 0] = np.nan
    a[9, 2] = np.inf
    a.tofile(tmp_path / "a_001.bin")
    ds = LidarPairs(tmp_path, SMALL, "train")
    assert ds.pairs == [(0, 1)]
    with pytest.warns(UserWarning, match=r"a_001.bin: 2 of 3000 points have NaN/Inf coordinates \(dropped\)"):
        item = ds[0]
    assert torch.isfinite(item["coord"]).all()
    with pytest.raises(DataError, match="a_001.bin: 2 of 3000 points have NaN/Inf coordinates$"):
        read_sweep(tmp_path / "a_001.bin")


def test_point_label_budget_keeps_a_stratified_fraction_of_each_frames_labels(kitti_root):
    from modalities.base import labelled_subset
    from modalities.lidar.sweeps import LabelledFrames, dataset_from_config

    cfg = {"path": str(kitti_root), "labels": "points", "point_range": list(SMALL.point_range),
           "voxel_size": list(SMALL.voxel_size), "max_points": 20000, "label_unit": "points"}
    full = dataset_from_config(cfg, "train")
    assert isinstance(full, LabelledFrames) and len(full) == 1  # 3 labelled frames: one for training
    y = full[0]["segment"].numpy()
    sub = labelled_subset(full, 0.1, seed=1)
    assert len(sub) == len(full)  # every frame stays; its labels thin out
    ys = sub[0]["segment"].numpy()
    assert np.array_equal(sub[0]["coord"].numpy(), full[0]["coord"].numpy())
    kept = ys >= 0
    assert np.array_equal(ys[kept], y[kept])  # kept labels are the file's
    for c in np.unique(y[y >= 0]):  # 10 % of every class, at least one point
        assert (ys == c).sum() == max(1, round(0.1 * (y == c).sum())), c
    assert np.array_equal(labelled_subset(full, 0.1, seed=1)[0]["segment"].numpy(), ys)
    assert not np.array_equal(labelled_subset(full, 0.1, seed=2)[0]["segment"].numpy(), ys)
    frames = dataset_from_config({**cfg, "label_unit": "frames"}, "train")
    assert len(labelled_subset(frames, 0.1, seed=1)) == 1 and np.array_equal(
        labelled_subset(frames, 0.1, seed=1)[0]["segment"].numpy(), y)  # frames unit: whole frames
    with pytest.raises(DataError, match="data.label_unit: 'frames' or 'points', not 'voxels'"):
        dataset_from_config({**cfg, "label_unit": "voxels"}, "train")
