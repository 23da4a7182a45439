"""LiDAR readers on the shared real sweeps: file values, label decoding, poses that align consecutive frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from modalities.base import DataError
from modalities.lidar.readers import (CLASS_NAMES, decode_labels, kitti_lidar_poses, read_bin, read_kitti_calib,
                                      read_kitti_poses, read_las, read_o3d, read_semantickitti_labels, read_sweep)
from tests.conftest import shared_data

STATIC = (40, 44, 48, 50, 51, 60, 70, 71, 72, 80, 81)  # road .. traffic sign: raw ids of the static world
VERTICAL = (50, 51, 71, 80, 81)  # building, fence, trunk, pole, traffic sign


@pytest.fixture(scope="module")
def seq00():
    return shared_data("3d/semantickitti/sequences/00")


def test_kitti_bin_returns_the_file_values(seq00):
    raw = np.fromfile(seq00 / "velodyne" / "000000.bin", dtype=np.float32).reshape(-1, 4)
    s = read_sweep(seq00 / "velodyne" / "000000.bin")
    assert len(s) == 124668 and np.array_equal(s.xyz, raw[:, :3]) and np.array_equal(s.intensity, raw[:, 3])
    assert s.xyz.dtype == np.float32 and s.xyz.flags.c_contiguous


def test_nuscenes_pcd_bin_has_five_columns():
    path = next(shared_data("3d/nuscenes/samples/LIDAR_TOP").glob("*.pcd.bin"))
    raw = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    s = read_bin(path)
    assert len(s) == 34688 and np.array_equal(s.xyz, raw[:, :3])
    assert np.allclose(s.intensity, raw[:, 3] / 255.0) and s.intensity.max() <= 1.0
    assert set(np.unique(raw[:, 4]).astype(int)) <= set(range(32))  # ring index of the HDL-32E


def test_kitti_object_reduced_scan_reads():
    s = read_sweep(shared_data("3d/kitti_object/mmdet3d_demo/000008_velodyne_reduced.bin"))
    assert len(s) == 17238 and s.xyz[:, 0].min() > -1  # FOV-cropped: points in front of the car


def test_laz_matches_the_decoded_reference():
    root = shared_data("3d/als_autzen")
    ref = np.load(root / "autzen_trim.npz")
    s = read_las(root / "autzen_trim.laz")
    assert len(s) == 110000
    assert np.allclose(s.xyz, ref["xyz"] - ref["xyz"].min(0), atol=1e-2)  # float32 of ~1e3 ft offsets
    assert np.allclose(s.intensity, ref["intensity"] / 65535.0)


def test_ply_and_pcd_round_trip_through_open3d(tmp_path, seq00):
    import open3d as o3d

    s = read_sweep(seq00 / "velodyne" / "000001.bin")
    pcd = o3d.t.geometry.PointCloud(o3d.core.Tensor(s.xyz[:5000]))
    pcd.point.intensity = o3d.core.Tensor(s.intensity[:5000, None])
    for suffix in (".ply", ".pcd"):
        o3d.t.io.write_point_cloud(str(tmp_path / f"a{suffix}"), pcd)
        back = read_o3d(tmp_path / f"a{suffix}")
        assert np.array_equal(back.xyz, s.xyz[:5000]) and np.allclose(back.intensity, s.intensity[:5000])


def test_labels_decode_to_semantic_and_instance(seq00):
    raw = np.fromfile(seq00 / "labels" / "000000.label", dtype=np.uint32)
    sem, inst = decode_labels(raw)
    assert np.array_equal(sem, raw & 0xFFFF) and np.array_equal(inst, raw >> 16)
    assert len(np.unique(inst)) == 15 and np.bincount(sem)[40] == 34228  # road points
    cls, inst2 = read_semantickitti_labels(seq00 / "labels" / "000000.label", n_points=124668)
    assert np.array_equal(inst2, inst)
    assert CLASS_NAMES[cls[sem == 10][0]] == "car" and CLASS_NAMES[cls[sem == 60][0]] == "road"  # lane marking
    assert CLASS_NAMES[cls[sem == 255][0]] == "motorcyclist"  # moving-motorcyclist -> its static class
    assert (cls[np.isin(sem, (0, 1, 52, 99))] == -1).all()  # unlabelled, outlier, other-structure/object ignored
    assert (inst[sem == 10] > 0).all()  # cars are instances
    with pytest.raises(DataError, match="labels for a sweep of 5 points"):
        read_semantickitti_labels(seq00 / "labels" / "000000.label", n_points=5)


def test_calib_and_poses(seq00):
    cam = read_kitti_poses(seq00 / "poses.txt")
    calib = read_kitti_calib(seq00 / "calib.txt")
    assert cam.shape == (5, 4, 4) and np.allclose(cam[1, 2, 3], 0.8586941)
    assert calib["P0"][0, 0] == 718.856 and np.isclose(calib["Tr"][0, 1], -0.9999672484946)
    lidar = kitti_lidar_poses(cam, calib["Tr"])
    assert np.allclose(lidar[0], np.eye(4), atol=1e-9)
    # the car drives forward along LiDAR x at ~0.86 m per 10 Hz frame
    assert 0.8 < lidar[1, 0, 3] < 0.9 and abs(lidar[1, 1, 3]) < 0.05


def test_frames_aligned_by_poses_overlap_on_static_structure(seq00):
    """Frames 1-3 moved into frame 0 by their poses land on frame 0's static structure. Vertical structure
    (buildings, fences, trunks, poles, signs) is what tells a good alignment: points on the road plane slide
    along it without changing their nearest-neighbour distance. Frame 3 has no labels: all its points are used
    (moving objects and the 0.18 m/frame motion distortion of the scans set the tail)."""
    lidar = kitti_lidar_poses(read_kitti_poses(seq00 / "poses.txt"), read_kitti_calib(seq00 / "calib.txt")["Tr"])
    ref = read_sweep(seq00 / "velodyne" / "000000.bin").xyz.astype(np.float64)
    sem0 = decode_labels(np.fromfile(seq00 / "labels" / "000000.label", dtype=np.uint32))[0]
    for k in (1, 2, 3):
        xyz = read_sweep(seq00 / "velodyne" / f"{k:06d}.bin").xyz.astype(np.float64)
        if k < 3:
            sem = decode_labels(np.fromfile(seq00 / "labels" / f"{k:06d}.label", dtype=np.uint32))[0]
            xyz, tree = xyz[np.isin(sem, VERTICAL)], cKDTree(ref[np.isin(sem0, VERTICAL)])
        else:
            tree = cKDTree(ref[np.isin(sem0, STATIC)])
        xyz = xyz[np.linalg.norm(xyz[:, :2], axis=1) < 25]
        aligned = xyz @ lidar[k][:3, :3].T + lidar[k][:3, 3]
        d_pose, d_none = tree.query(aligned)[0], tree.query(xyz)[0]
        p90_pose, p90_none = np.percentile(d_pose, 90), np.percentile(d_none, 90)
        if k < 3:
            assert np.median(d_pose) < 0.1 and p90_pose < 0.35 and p90_none > 1.8 * p90_pose, (k, p90_pose, p90_none)
        else:
            assert p90_pose < 0.6 and p90_none > 1.5 * p90_pose, (k, p90_pose, p90_none)


def test_bad_sweeps_are_one_line_errors(tmp_path):
    rows = np.arange(40, dtype=np.float32).reshape(10, 4)
    (tmp_path / "short.bin").write_bytes(rows.tobytes() + b"\x00\x01\x02")
    with pytest.raises(DataError, match=r"short.bin: size 163 bytes is not a multiple of the 16-byte row"):
        read_sweep(tmp_path / "short.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError, match="empty.bin: empty sweep"):
        read_sweep(tmp_path / "empty.bin")
    rows[3, 1] = np.nan
    rows.tofile(tmp_path / "nan.bin")
    with pytest.raises(DataError, match="nan.bin: 1 of 10 points have NaN/Inf coordinates"):
        read_sweep(tmp_path / "nan.bin")
    (tmp_path / "a.xyz").write_text("1 2 3")
    with pytest.raises(DataError, match="unknown sweep format"):
        read_sweep(tmp_path / "a.xyz")
    with pytest.raises(DataError, match="no such sweep file"):
        read_sweep(tmp_path / "missing.bin")
    json.dumps(str(tmp_path))
