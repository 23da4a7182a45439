"""Ray-cast LiDAR simulator over procedural streets with moving objects (the embedded default).

Each sequence is a straight street along world x: a road (SemanticKITTI raw id 40) between raised sidewalks (48),
terrain verges (72), building facades of random width, depth and height with gaps (50), poles (80), trees as trunk
(71) plus crown (70), parked cars (10) and moving cars (252) and pedestrians (254, 30 when standing). The ego car
drives along the road at ``ego_speed`` with a slow yaw wobble; a 64-beam spinning LiDAR 1.73 m above the ground
(elevations uniformly spaced from +2 deg to -24.8 deg, HDL-64E's span) is ray cast against the triangle meshes
with open3d's ``RaycastingScene`` (Embree BVH) at 10 Hz. Ranges get Gaussian noise (2 cm); intensity is a
per-class albedo times the cosine of the incidence angle with 5 % noise; rays without a hit within 80 m are
dropped, as a real sensor drops them.

Written in the SemanticKITTI layout so that the same reader serves simulated and real data::

    sequences/SS/velodyne/NNNNNN.bin   float32 (x, y, z, intensity) in the LiDAR frame
    sequences/SS/labels/NNNNNN.label   uint32 semantic | instance << 16
    sequences/SS/flow/NNNNNN.npz       true scene flow of the moving points: "index" int64[M], "flow" float32[M, 3]
                                       (object displacement until the next sweep, in this sweep's LiDAR frame;
                                       every other point is static, flow 0)
    sequences/SS/poses.txt, calib.txt  LiDAR poses in the KITTI format with Tr = identity

Caveats: no motion distortion within a sweep (each sweep is instantaneous), no multi-return or ray divergence,
box-shaped cars and cylinder pedestrians; see data_cards/lidar_simulator.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modalities.base import build_corpus

__all__ = ["SIM_VERSION", "simulate_corpus", "simulate_sequence", "beam_directions"]

SIM_VERSION = 1
DT = 0.1  # 10 Hz
SENSOR_HEIGHT = 1.73
ALBEDO = {40: 0.25, 48: 0.35, 72: 0.45, 50: 0.55, 80: 0.6, 71: 0.4, 70: 0.5, 10: 0.7, 252: 0.7, 30: 0.45, 254: 0.45}


def beam_directions(n_beams: int = 64, n_azimuth: int = 1024, elev_deg: tuple[float, float] = (2.0, -24.8)) -> np.ndarray:
    """Unit ray directions float32[n_beams * n_azimuth, 3] of a spinning multi-beam LiDAR (x forward, z up)."""
    elev = np.deg2rad(np.linspace(elev_deg[0], elev_deg[1], n_beams))
    az = np.linspace(-np.pi, np.pi, n_azimuth, endpoint=False)
    e, a = np.meshgrid(elev, az, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3).astype(np.float32)


def _box(centre: tuple[float, float, float], size: tuple[float, float, float], yaw: float = 0.0) -> Any:
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_box(*size)
    m.translate(-np.asarray(size) / 2)
    m.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0.0, 0.0, yaw)), center=(0, 0, 0))
    m.translate(centre)
    return m


def _cylinder(centre: tuple[float, float, float], radius: float, height: float) -> Any:
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_cylinder(radius, height, resolution=12)
    m.translate(centre)
    return m


def _sphere(centre: tuple[float, float, float], radius: float) -> Any:
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=8)
    m.translate(centre)
    return m


def _street(rng: np.random.Generator, length: float) -> tuple[list[tuple[Any, int, int]], list[dict[str, Any]], float]:
    """Static meshes ``(mesh, raw class id, instance id)``, moving agents (dicts) and the ego lane's y."""
    road_half = rng.uniform(5.0, 7.0)  # two lanes plus a parking strip per side
    walk = rng.uniform(2.0, 4.0)
    x0, x1 = -40.0, length + 40.0
    span = x1 - x0
    static: list[tuple[Any, int, int]] = [
        (_box(((x0 + x1) / 2, 0.0, -0.05), (span, 2 * road_half, 0.1)), 40, 0),
    ]
    for side in (-1, 1):
        y_walk = side * (road_half + walk / 2)
        static.append((_box(((x0 + x1) / 2, y_walk, 0.075), (span, walk, 0.15)), 48, 0))
        verge = rng.uniform(0.0, 6.0)
        y_face = side * (road_half + walk + verge)
        if verge > 0.5:
            static.append((_box(((x0 + x1) / 2, side * (road_half + walk + verge / 2), 0.0), (span, verge, 0.1)), 72, 0))
        x = x0
        while x < x1:  # facades with gaps
            w = rng.uniform(6.0, 25.0)
            if rng.random() > 0.2:
                d, h = rng.uniform(6, 15), rng.uniform(4, 18)
                static.append((_box((x + w / 2, y_face + side * d / 2, h / 2), (w, d, h)), 50, 0))
            x += w + rng.uniform(0.0, 4.0)
        for px in np.arange(x0, x1, rng.uniform(12, 25)):
            static.append((_cylinder((px, side * (road_half + 0.4), 0.0), 0.08, rng.uniform(4, 7)), 80, 0))
        for tx in np.arange(x0 + rng.uniform(0, 8), x1, rng.uniform(7, 15)):
            ty = side * (road_half + walk - 0.6)
            trunk_h = rng.uniform(1.5, 3.0)
            static.append((_cylinder((tx, ty, 0.0), rng.uniform(0.12, 0.25), trunk_h), 71, 0))
            static.append((_sphere((tx, ty, trunk_h + 1.2), rng.uniform(1.0, 2.2)), 70, 0))
    inst = 1
    for _ in range(int(rng.integers(4, 10))):  # parked cars along both curbs
        side = rng.choice([-1, 1])
        static.append((_box((rng.uniform(x0, x1), side * (road_half - 1.0), 0.8), (4.2, 1.8, 1.5),
                            rng.normal(0, 0.05)), 10, inst))
        inst += 1
    agents = []
    for _ in range(int(rng.integers(2, 5))):  # moving cars: oncoming lane anywhere, ego lane well ahead/behind
        if rng.random() < 0.5:
            y, x, v = road_half / 2, rng.uniform(0, length + 40), -rng.uniform(5, 14)
        else:
            y, x, v = -road_half / 2, rng.choice([-1, 1]) * rng.uniform(12, 35), rng.uniform(6, 10)
        agents.append({"cls": 252, "inst": inst, "size": (4.4, 1.9, 1.5), "y": y, "x": x, "v": v, "z": 0.8})
        inst += 1
    for _ in range(int(rng.integers(2, 6))):  # pedestrians on the sidewalks
        side = rng.choice([-1, 1])
        v = rng.choice([-1, 1]) * rng.uniform(0.8, 1.8)
        agents.append({"cls": 254, "inst": inst, "size": (0.3, 1.75), "y": side * (road_half + walk / 2),
                       "x": rng.uniform(0, length), "v": v, "z": 0.0})
        inst += 1
    return static, agents, -road_half / 2


def _agent_mesh(a: dict[str, Any], t: float) -> Any:
    x = a["x"] + a["v"] * t
    if a["cls"] == 252:
        return _box((x, a["y"], a["z"]), a["size"], 0.0 if a["v"] > 0 else np.pi)
    return _cylinder((x, a["y"], 0.0), a["size"][0], a["size"][1])


def simulate_sequence(out: Path, seed: int, n_frames: int = 10, ego_speed: float = 8.0, n_beams: int = 64,
                      n_azimuth: int = 1024, max_range: float = 80.0) -> int:
    """Write one simulated sequence (SemanticKITTI layout) into ``out``; returns its number of points."""
    import open3d as o3d

    rng = np.random.default_rng(seed)
    length = ego_speed * DT * n_frames
    static, agents, ego_y = _street(rng, length)
    dirs_sensor = beam_directions(n_beams, n_azimuth)
    for sub in ("velodyne", "labels", "flow"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    yaw_amp, yaw_phase = rng.uniform(0.0, 0.05), rng.uniform(0, 2 * np.pi)
    poses, total = [], 0
    for k in range(n_frames):
        t = k * DT
        yaw = yaw_amp * np.sin(2 * np.pi * t / 3.0 + yaw_phase)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        pos = np.array([ego_speed * t, ego_y + rng.normal(0, 0.05), SENSOR_HEIGHT])
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, pos
        poses.append(pose)

        scene = o3d.t.geometry.RaycastingScene()
        ids: dict[int, tuple[int, int, float]] = {}  # geometry id -> (class, instance, velocity x)
        for mesh, cls, inst in static:
            ids[scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))] = (cls, inst, 0.0)
        for a in agents:
            gid = scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(_agent_mesh(a, t)))
            ids[gid] = (a["cls"], a["inst"], float(a["v"]))
        dirs = dirs_sensor @ rot.T.astype(np.float32)
        rays = np.concatenate([np.broadcast_to(pos.astype(np.float32), dirs.shape), dirs], 1)
        hit = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))
        t_hit = hit["t_hit"].numpy()
        gids = hit["geometry_ids"].numpy()
        normals = hit["primitive_normals"].numpy()
        ok = np.isfinite(t_hit) & (t_hit < max_range)
        r = t_hit[ok] + rng.normal(0, 0.02, ok.sum()).astype(np.float32)
        xyz_sensor = dirs_sensor[ok] * r[:, None]
        lut = np.array([ids[int(g)] for g in gids[ok]]) if ok.any() else np.zeros((0, 3))
        cls = lut[:, 0].astype(np.int64)
        inst = lut[:, 1].astype(np.int64)
        vel = lut[:, 2]
        cos_inc = np.abs((normals[ok] * dirs[ok]).sum(1))
        albedo = np.vectorize(ALBEDO.get)(cls) if len(cls) else np.zeros(0)
        inten = np.clip(albedo * (0.3 + 0.7 * cos_inc) * rng.normal(1.0, 0.05, len(cls)), 0, 1)
        standing = (cls == 254) & (vel == 0)
        cls[standing] = 30
        name = f"{k:06d}"
        np.concatenate([xyz_sensor, inten[:, None]], 1).astype(np.float32).tofile(out / "velodyne" / f"{name}.bin")
        (cls.astype(np.uint32) | (inst.astype(np.uint32) << 16)).tofile(out / "labels" / f"{name}.label")
        moving = np.flatnonzero(vel != 0)
        world_flow = np.zeros((len(moving), 3))
        world_flow[:, 0] = vel[moving] * DT
        np.savez(out / "flow" / f"{name}.npz", index=moving.astype(np.int64),
                 flow=(world_flow @ rot).astype(np.float32))  # world -> LiDAR_k: R^T v, row form v @ R
        total += int(ok.sum())
    with open(out / "poses.txt", "w") as f:
        for p in poses:
            f.write(" ".join(f"{v:.9e}" for v in (np.linalg.inv(poses[0]) @ p)[:3].ravel()) + "\n")
    eye = " ".join(f"{v:.1f}" for v in np.eye(4)[:3].ravel())
    (out / "calib.txt").write_text("".join(f"P{i}: {eye}\n" for i in range(4)) + f"Tr: {eye}\n")
    return total


def simulate_corpus(out_dir: Path, n_sequences: int = 4, n_frames: int = 8, seed: int = 0, n_azimuth: int = 1024
                    ) -> Path:
    """Build the simulated default corpus once into ``out_dir`` (via :func:`~modalities.base.build_corpus`)."""
    out_dir = Path(out_dir)
    spec = {"simulator": "lidar_streets", "version": SIM_VERSION, "n_sequences": n_sequences, "n_frames": n_frames,
            "seed": seed, "n_azimuth": n_azimuth}
    files = [f"sequences/{s:02d}/velodyne/{k:06d}.bin" for s in range(n_sequences) for k in range(n_frames)]

    def build() -> dict[str, Any]:
        import shutil

        shutil.rmtree(out_dir / "sequences", ignore_errors=True)
        points = sum(simulate_sequence(out_dir / "sequences" / f"{s:02d}", seed=seed * 1000 + s, n_frames=n_frames,
                                       n_azimuth=n_azimuth) for s in range(n_sequences))
        return {"points": points}

    return build_corpus(out_dir, spec, files, re.compile(r"$^"), build)
