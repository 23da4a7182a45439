"""Scene readers return the values the files hold; bad files end in one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.base import DataError
from modalities.scenes.points import point_dict, prepare_scene
from modalities.scenes.readers import (index_scenes, read_ply, read_pointcept, read_s3dis, read_scene,
                                       read_semantickitti, read_sensaturban)
from tests.conftest import shared_data

SENSAT = "3d/sensaturban/birmingham_block_0_0002.bin"
KITTI = "3d/semantickitti/sequences/00/velodyne"


def _write_binary_ply(path, xyz, rgba, label, faces=True):
    n = len(xyz)
    hdr = ("ply\nformat binary_little_endian 1.0\ncomment ScanNet-like\nelement vertex %d\n"
           "property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
           "property uchar blue\nproperty uchar alpha\nproperty ushort label\n" % n)
    if faces:
        hdr += "element face 1\nproperty list uchar int vertex_indices\n"
    hdr += "end_header\n"
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                   ("alpha", "u1"), ("label", "<u2")])
    v = np.zeros(n, dt)
    v["x"], v["y"], v["z"] = xyz.T
    v["red"], v["green"], v["blue"], v["alpha"] = rgba.T
    v["label"] = label
    tail = (np.array([3], np.uint8).tobytes() + np.array([0, 1, 2], "<i4").tobytes()) if faces else b""
    path.write_bytes(hdr.encode() + v.tobytes() + tail)


def test_sensaturban_reader_equals_the_file():
    path = shared_data(SENSAT)
    raw = np.fromfile(path, np.float32).reshape(-1, 6)
    lab = np.fromfile(path.with_suffix(".label"), np.uint8)
    s = read_sensaturban(path)
    np.testing.assert_array_equal(s.coord, raw[:, :3])
    np.testing.assert_array_equal(s.color, raw[:, 3:])
    np.testing.assert_array_equal(s.segment, lab.astype(np.int64))
    assert s.normal is None and s.sensor is None


def test_semantickitti_reader_equals_the_file_and_maps_labels():
    root = shared_data(KITTI)
    raw = np.fromfile(root / "000000.bin", np.float32).reshape(-1, 4)
    sem = np.fromfile(root.parent / "labels" / "000000.label", np.uint32) & 0xFFFF
    s = read_semantickitti(root / "000000.bin")
    np.testing.assert_array_equal(s.coord, raw[:, :3])
    assert s.color is None and np.array_equal(s.sensor, np.zeros(3))
    # learning map: road 40 and lane marking 60 -> 8, car 10 -> 0, vegetation 70 -> 14, unlabelled 0 / outlier 1 -> -1
    for raw_id, cls in ((40, 8), (60, 8), (10, 0), (70, 14), (0, -1), (1, -1), (50, 12)):
        assert (s.segment[sem == raw_id] == cls).all(), raw_id
    assert read_semantickitti(root / "000003.bin").segment is None  # frame 3 has no label file


def test_binary_ply_with_ushort_labels(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    rgba = rng.integers(0, 256, (7, 4)).astype(np.uint8)
    label = np.array([0, 1, 2, 3, 40, 1000, 65535], np.uint16)
    _write_binary_ply(tmp_path / "scene.ply", xyz, rgba, label)
    s = read_ply(tmp_path / "scene.ply")
    np.testing.assert_array_equal(s.coord, xyz)
    np.testing.assert_allclose(s.color, rgba[:, :3] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(s.segment, label.astype(np.int64))


def test_ascii_ply_and_sibling_label_file(tmp_path):
    import open3d as o3d

    rng = np.random.default_rng(1)
    xyz = rng.uniform(size=(5, 3)).astype(np.float32)
    rgb = rng.uniform(size=(5, 3)).astype(np.float32)
    pc = o3d.t.geometry.PointCloud()
    pc.point.positions = o3d.core.Tensor(xyz)
    pc.point.colors = o3d.core.Tensor(rgb)
    o3d.t.io.write_point_cloud(str(tmp_path / "room_vh_clean_2.ply"), pc, write_ascii=True)
    _write_binary_ply(tmp_path / "room_vh_clean_2.labels.ply", xyz, np.zeros((5, 4), np.uint8),
                      np.array([5, 4, 3, 2, 1], np.uint16), faces=False)
    s = read_ply(tmp_path / "room_vh_clean_2.ply")
    np.testing.assert_allclose(s.coord, xyz, atol=1e-6)
    np.testing.assert_allclose(s.color, rgb, atol=1e-6)
    np.testing.assert_array_equal(s.segment, [5, 4, 3, 2, 1])
    assert index_scenes(tmp_path) == [tmp_path / "room_vh_clean_2.ply"]  # the label file is not a scene


def test_pointcept_folder_and_s3dis_room(tmp_path):
    rng = np.random.default_rng(2)
    scene = tmp_path / "scene0000_00"
    scene.mkdir()
    coord = rng.normal(size=(6, 3)).astype(np.float32)
    color = rng.integers(0, 256, (6, 3)).astype(np.uint8)
    normal = rng.normal(size=(6, 3)).astype(np.float32)
    seg = np.array([0, 1, -1, 3, 4, 5])
    for k, v in dict(coord=coord, color=color, normal=normal, segment=seg).items():
        np.save(scene / f"{k}.npy", v)
    s = read_pointcept(scene)
    np.testing.assert_array_equal(s.coord, coord)
    np.testing.assert_allclose(s.color, color / 255.0, atol=1e-7)
    np.testing.assert_array_equal(s.normal, normal)
    np.testing.assert_array_equal(s.segment, seg)

    room = tmp_path / "Area_1" / "office_1"
    (room / "Annotations").mkdir(parents=True)
    pts = np.array([[0.1, 0.2, 0.3, 255, 0, 0], [1.0, 2.0, 3.0, 0, 255, 0], [4.5, 5.5, 6.5, 0, 0, 255]])
    np.savetxt(room / "office_1.txt", pts, fmt="%.3f %.3f %.3f %d %d %d")
    np.savetxt(room / "Annotations" / "chair_1.txt", pts[:1], fmt="%.3f %.3f %.3f %d %d %d")
    np.savetxt(room / "Annotations" / "wall_2.txt", pts[2:], fmt="%.3f %.3f %.3f %d %d %d")
    r = read_s3dis(room)
    np.testing.assert_allclose(r.coord, pts[:, :3], atol=1e-6)
    np.testing.assert_allclose(r.color, pts[:, 3:] / 255.0)
    np.testing.assert_array_equal(r.segment, [8, -1, 2])  # chair, unannotated, wall
    assert index_scenes(tmp_path) == [room, scene]


def test_label_file_of_wrong_length_is_one_line(tmp_path):
    src = shared_data(SENSAT)
    (tmp_path / "crop.bin").write_bytes(src.read_bytes())
    (tmp_path / "crop.label").write_bytes(src.with_suffix(".label").read_bytes()[:-5])
    with pytest.raises(DataError) as e:
        read_scene(tmp_path / "crop.bin")
    msg = str(e.value)
    assert "\n" not in msg and "crop.label" in msg and "60090 labels for the 60095 points" in msg


def test_bad_files_are_one_line(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "odd.bin").write_bytes(b"\0" * 10)
    (tmp_path / "x.ply").write_bytes(b"not a ply\n")
    for name, what in (("empty.bin", "0 bytes"), ("odd.bin", "10 bytes"), ("x.ply", "not a PLY")):
        with pytest.raises(DataError, match=what) as e:
            read_scene(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(DataError, match="no scenes found"):
        index_scenes(_mkdir(tmp_path / "no_scenes"))


def _mkdir(path):
    path.mkdir()
    return path


def test_no_colour_gives_constant_colour_channels():
    s = read_scene(shared_data(KITTI) / "000001.bin")
    p = prepare_scene(s, 0.2)
    pts = point_dict(p.coord, p.color, p.normal, 0.2)
    assert pts["feat"].shape[1] == 6
    assert (pts["feat"][:, :3] == 0).all()  # documented fallback: mid grey
    assert np.allclose(np.linalg.norm(pts["feat"][:, 3:].numpy(), axis=1), 1.0, atol=1e-4)


def test_single_point_scene_runs_through_the_unet(tmp_path):
    import models

    _write_binary_ply(tmp_path / "one.ply", np.array([[1.0, 2.0, 3.0]], np.float32),
                      np.array([[10, 20, 30, 255]], np.uint8), np.array([7], np.uint16), faces=False)
    s = read_scene(tmp_path / "one.ply")
    p = prepare_scene(s, 0.02)
    np.testing.assert_array_equal(p.normal, [[0, 0, 1]])  # no plane through one point: documented default
    pts = point_dict(p.coord, p.color, p.normal, 0.02, p.segment)
    enc = models.create("sparse_unet_xs", in_channels=6).eval()
    f = enc.point_features(pts, "all")
    assert f.shape == (1, sum(enc.level_channels)) and bool(f.isfinite().all())


def test_a_lidar_bin_outside_velodyne_is_not_taken_for_a_sensaturban_crop(tmp_path):
    src = shared_data(KITTI) / "000000.bin"
    n = (src.stat().st_size // 48) * 48  # a whole number of 6-float rows, so only the values can tell
    (tmp_path / "scan.bin").write_bytes(src.read_bytes()[:n])
    with pytest.raises(DataError, match="not a SensatUrban crop") as e:
        read_scene(tmp_path / "scan.bin")
    assert "\n" not in str(e.value)


def _slab_mesh(size=(1.0, 0.6, 0.03)):
    """A closed thin box (a table top): 8 corners, 6 quads wound counter-clockwise seen from outside."""
    corners = (np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)]) * size).astype(np.float32)
    centre = corners.mean(0)
    quads = []
    for axis in range(3):
        for side in (0, 1):
            q = [i for i in range(8) if (i >> axis) & 1 == side]  # the 4 corners on this face
            mid = corners[q].mean(0)
            ang = np.arctan2(*(corners[q] - mid)[:, [a for a in range(3) if a != axis]].T[::-1])
            q = [q[k] for k in np.argsort(ang)]
            n = np.cross(corners[q[1]] - corners[q[0]], corners[q[2]] - corners[q[0]])
            quads.append(q if n @ (mid - centre) > 0 else q[::-1])
    return corners, quads


def test_mesh_ply_gets_outward_normals_from_its_faces(tmp_path):
    # binary triangles (the ScanNet layout) and ASCII quads (split into fans): the normals follow the winding, so
    # the top of a 3 cm slab points up and its bottom down; an estimate from the points alone, oriented towards a
    # viewpoint above, turns the bottom up as well
    xyz, quads = _slab_mesh()
    centre = xyz.mean(0)
    tris = np.array([t for q in quads for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])], "<i4")
    hdr = ("ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
           "property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n" % len(tris))
    rec = np.zeros(len(tris), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    rec["n"], rec["i"] = 3, tris
    (tmp_path / "slab.ply").write_bytes(hdr.encode() + xyz.astype("<f4").tobytes() + rec.tobytes())
    lines = ["ply", "format ascii 1.0", "element vertex 8", "property float x", "property float y",
             "property float z", "element face 6", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(f"{c:.6f}" for c in p) for p in xyz] + [f"4 {' '.join(map(str, q))}" for q in quads]
    (tmp_path / "slab_ascii.ply").write_text("\n".join(lines) + "\n")
    for name in ("slab.ply", "slab_ascii.ply"):
        s = read_ply(tmp_path / name)
        np.testing.assert_array_equal(s.coord, xyz)
        np.testing.assert_allclose(np.linalg.norm(s.normal, axis=1), 1.0, atol=1e-6)
        assert ((s.normal * (xyz - centre)).sum(1) > 0).all(), name  # every corner's normal points out
        top = xyz[:, 2] > centre[2]
        assert (s.normal[top, 2] > 0).all() and (s.normal[~top, 2] < 0).all(), name
    from modalities.scenes.points import estimate_normals

    dense = np.concatenate([xyz, np.random.default_rng(0).uniform(0, 1, (400, 3)).astype(np.float32)
                            * np.array([1.0, 0.6, 0.0], np.float32) + np.array([0, 0, 0.03], np.float32)
                            * np.random.default_rng(1).integers(0, 2, (400, 1))])
    est = estimate_normals(dense, radius=0.1, viewpoint=centre + [0, 0, 1.0])
    assert (est[:8][~top, 2] > 0).all()  # point-only estimates cannot tell the slab's two sides apart


def test_mesh_ply_with_a_face_outside_the_vertices_is_refused(tmp_path):
    lines = ["ply", "format ascii 1.0", "element vertex 3", "property float x", "property float y",
             "property float z", "element face 1", "property list uchar int vertex_indices", "end_header",
             "0 0 0", "1 0 0", "0 1 0", "3 0 1 7"]
    (tmp_path / "bad.ply").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad.ply: PLY face refers to a vertex outside 0..2"):
        read_ply(tmp_path / "bad.ply")
