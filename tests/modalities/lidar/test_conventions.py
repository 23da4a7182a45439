"""Label and point conventions of a user's SemanticKITTI-style folder, detected (one printed line each) or declared.

Built from the real shared frames: their raw labels converted to training ids 0..19 the way semantic-kitti-api's
``remap_semantic_labels.py`` writes them (``learning_map``, instance kept in the upper 16 bits), and their points
written with 3 columns (x, y, z).
"""

from __future__ import annotations

import numpy as np
import pytest

from modalities.base import DataError
from modalities.lidar import MODALITY
from modalities.lidar.probes import probe_targets
from modalities.lidar.readers import (CLASS_NAMES, LEARNING_MAP, decode_labels, read_semantickitti_labels, read_sweep,
                                      resolve_label_format)
from modalities.lidar.sweeps import index_frames, resolve_point_columns
from tests.conftest import shared_data

SMALL = {"point_range": [-25.6, -25.6, -3.0, 25.6, 25.6, 1.8], "voxel_size": [0.4, 0.4, 0.4], "max_points": 2000}
CAR = CLASS_NAMES.index("car")


@pytest.fixture(scope="module")
def seq00():
    return shared_data("3d/semantickitti/sequences/00")


def _to_train_ids(raw: np.ndarray) -> np.ndarray:
    """semantic-kitti-api learning_map: 0 unlabelled, 1 car, ..., 19 traffic-sign (= LEARNING_MAP + 1)."""
    lut = np.zeros(260, np.uint32)
    for k, v in LEARNING_MAP.items():
        lut[k] = v + 1
    sem, inst = decode_labels(raw)
    return (lut[sem] | (inst.astype(np.uint32) << 16)).astype(np.uint32)


@pytest.fixture(scope="module")
def train_id_root(tmp_path_factory, seq00):
    """A SemanticKITTI copy of frames 0-2 whose labels are training ids."""
    root = tmp_path_factory.mktemp("train_ids")
    seq = root / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "labels").mkdir()
    for k in range(3):
        (seq / "velodyne" / f"{k:06d}.bin").symlink_to(seq00 / "velodyne" / f"{k:06d}.bin")
        _to_train_ids(np.fromfile(seq00 / "labels" / f"{k:06d}.label", np.uint32)).tofile(
            seq / "labels" / f"{k:06d}.label")
    return root


def test_train_ids_are_detected_and_car_stays_car(train_id_root, seq00, capsys):
    converted = train_id_root / "sequences/00/labels/000000.label"
    sem = decode_labels(np.fromfile(converted, np.uint32))[0]
    assert sem.max() <= 19 and 1 in sem and 9 in sem  # car and road as training ids
    cfg = {"path": str(train_id_root), "labels": "points", **SMALL}
    ds = MODALITY.build_dataset(cfg, "train")
    said = capsys.readouterr().out.splitlines()
    assert cfg["label_format"] == "train_ids" and cfg["point_columns"] == 4  # resolved, for config.yaml
    assert any(line.startswith("lidar: data.label_format=auto -> train_ids") for line in said)
    MODALITY.build_dataset(cfg, "val")
    assert capsys.readouterr().out == ""  # declared now: nothing more to say
    # the converted labels give the classes of the raw ones, point for point: car stays car
    raw_sem = decode_labels(np.fromfile(seq00 / "labels/000000.label", np.uint32))[0]
    raw_cls = read_semantickitti_labels(seq00 / "labels/000000.label", label_format="raw")[0]
    got = read_semantickitti_labels(converted, label_format="train_ids")[0]
    np.testing.assert_array_equal(got, raw_cls)
    assert (got[raw_sem == 10] == CAR).all() and (got[raw_sem == 70] == CLASS_NAMES.index("vegetation")).all()
    seg = ds[0]["segment"].numpy()
    assert CAR in seg and set(np.unique(seg)) <= set(range(-1, 19))
    # read as raw ids (the old silent behaviour: car ignored, vegetation 'motorcycle') is now a one-line error
    with pytest.raises(DataError) as e:
        read_semantickitti_labels(converted, label_format="raw")
    assert "000000.label" in str(e.value) and "data.label_format" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="data.label_format"):
        MODALITY.build_dataset({**cfg, "label_format": "raw"}, "train")[0]


def test_raw_labels_are_detected_as_raw(seq00, capsys):
    cfg = {"path": str(seq00.parent.parent), "labels": "points", **SMALL}
    ds = MODALITY.build_dataset(cfg, "train")
    assert cfg["label_format"] == "raw"
    assert "lidar: data.label_format=auto -> raw (SemanticKITTI raw ids 40, 44, 48" in capsys.readouterr().out
    assert CAR in ds[0]["segment"].numpy()
    with pytest.raises(DataError, match="not training ids 0..19"):
        read_semantickitti_labels(seq00 / "labels/000000.label", label_format="train_ids")


def test_ambiguous_or_mixed_labels_are_refused_in_one_line(tmp_path, seq00, train_id_root):
    ambiguous = tmp_path / "a.label"
    raw = np.fromfile(seq00 / "labels/000000.label", np.uint32)
    sem = decode_labels(raw)[0]
    np.where(np.isin(sem, (0, 1, 10)), raw, 0).astype(np.uint32).tofile(ambiguous)  # unlabelled, outlier, car
    with pytest.raises(DataError) as e:
        resolve_label_format([ambiguous])
    msg = str(e.value)
    assert msg.startswith(str(ambiguous)) and "data.label_format" in msg and "\n" not in msg
    assert resolve_label_format([ambiguous], "raw")[0] == "raw"  # declared: accepted
    mixed = [seq00 / "labels/000000.label", train_id_root / "sequences/00/labels/000001.label"]
    with pytest.raises(DataError, match="training ids 0..19 while 000000.label holds raw"):
        resolve_label_format(mixed)
    odd = tmp_path / "odd.label"
    np.full(10, 300, np.uint32).tofile(odd)
    with pytest.raises(DataError, match="neither SemanticKITTI raw ids nor training ids"):
        resolve_label_format([odd])
    with pytest.raises(DataError, match="data.label_format: 'ids' is not one of"):
        resolve_label_format([odd], "ids")


@pytest.fixture(scope="module")
def three_column_root(tmp_path_factory, seq00):
    """Frames 0-2 as (x, y, z) float32 rows, with their raw labels."""
    root = tmp_path_factory.mktemp("xyz")
    seq = root / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "labels").mkdir()
    for k in range(3):
        xyz = read_sweep(seq00 / "velodyne" / f"{k:06d}.bin").xyz
        xyz.tofile(seq / "velodyne" / f"{k:06d}.bin")
        (seq / "labels" / f"{k:06d}.label").symlink_to(seq00 / "labels" / f"{k:06d}.label")
    return root


def test_three_column_points_get_intensity_zero_and_say_so(three_column_root, seq00, capsys):
    frames = index_frames(three_column_root, check_sizes=False)
    # frame 0 has 124668 points: its size fits 3, 4 and 6 float32 columns, so the content decides
    assert len(read_sweep(seq00 / "velodyne/000000.bin")) % 4 == 0
    assert resolve_point_columns(frames[:1])[0] == 3 and "median step between consecutive points" in \
        resolve_point_columns(frames[:1])[1]
    assert [resolve_point_columns([f])[0] for f in frames[1:]] == [3, 3]
    cfg = {"path": str(three_column_root), **SMALL, "max_points": 0}
    ds = MODALITY.build_dataset(cfg, "train")
    said = capsys.readouterr().out
    assert "lidar: data.point_columns=auto -> 3 (x, y, z without intensity: intensity set to 0" in said
    assert cfg["point_columns"] == 3 and cfg["label_format"] == "raw"
    item = ds[(0, 0)]  # pair (0, 1): the current sweep is frame 1
    ref = read_sweep(seq00 / "velodyne/000001.bin")
    keep = (np.abs(ref.xyz[:, :2]) < 25.6).all(1) & (ref.xyz[:, 2] >= -3.0) & (ref.xyz[:, 2] < 1.8)
    np.testing.assert_array_equal(item["coord"].numpy(), ref.xyz[keep])
    assert (item["strength"] == 0).all() and (item["prev_strength"] == 0).all()
    # the point features keep their 4 channels, the 4th being 0
    lab = MODALITY.build_dataset({**cfg, "labels": "points"}, "train")[0]
    assert lab["feat"].shape[1] == 4 and (lab["feat"][:, 3] == 0).all() and len(lab["segment"]) == len(lab["coord"])
    # a declared layout is used as is; a wrong declared layout is named by the file size
    assert MODALITY.build_dataset({**cfg, "point_columns": 3}, "train")[(0, 0)]["coord"].shape == item["coord"].shape
    with pytest.raises(DataError, match=r"00000[12].bin: size .* not a multiple of the 16-byte row"):
        MODALITY.build_dataset({**cfg, "point_columns": 4}, "train")
    # a declared width that only the content contradicts (124668 points fit 4 columns too) is named as well
    with pytest.raises(DataError, match=r"000000.bin: data.point_columns=4 but the file reads as 3 columns"):
        resolve_point_columns(index_frames(three_column_root, check_sizes=False)[:1], 4)


def test_real_four_column_scans_stay_four_columns(seq00, tmp_path):
    frames = index_frames(seq00.parent.parent, check_sizes=False)
    columns, msg = resolve_point_columns(frames)
    assert columns == 4 and "-> 4 (x, y, z, intensity)" in msg
    rows = np.fromfile(seq00 / "velodyne/000000.bin", np.float32).reshape(-1, 4)
    np.concatenate([rows, rows[:, :2]], 1).tofile(tmp_path / "six.bin")  # 6 columns: neither rule applies
    with pytest.raises(DataError, match="six.bin: reads as 6 float32 columns"):
        resolve_point_columns(index_frames(tmp_path, check_sizes=False))


def test_the_probe_of_a_train_id_folder_decides_from_its_own_files(train_id_root, capsys):
    probes = probe_targets({"probe_data": str(train_id_root), **SMALL}, None)
    assert "lidar: data.label_format=auto -> train_ids" in capsys.readouterr().out
    ps = probes["semantickitti_points"]
    assert any((y == CAR).any() for y in ps.y_train)


def test_pcd_without_intensity_reads_zero_and_says_so_once(tmp_path, seq00, capsys):
    import open3d as o3d

    from modalities.lidar.readers import read_o3d

    xyz = read_sweep(seq00 / "velodyne/000000.bin").xyz[:3000]
    for name in ("a.pcd", "b.pcd"):
        o3d.t.io.write_point_cloud(str(tmp_path / name), o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz)))
    a, b = read_o3d(tmp_path / "a.pcd"), read_o3d(tmp_path / "b.pcd")
    assert np.array_equal(a.xyz, xyz) and (a.intensity == 0).all() and (b.intensity == 0).all()
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "a.pcd has no intensity attribute" in said and "intensity set to 0" in said
