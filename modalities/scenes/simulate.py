"""The embedded default scene corpus: procedurally generated furnished rooms, written as Pointcept scene folders.

A room is a rectangle of ``U(3, 7) x U(3, 6)`` m with walls ``U(2.4, 3.0)`` m high and no ceiling (most indoor
scans see little of it), furnished with tables, chairs (grouped around the tables), shelves (against the walls) and
small boxes on tables and shelves. Every object is a union of boxes (a table: a top slab on four legs; a chair: a
seat, four legs and a backrest; a shelf: two sides, a back and 3-5 boards; a box: one box), each turned about the
vertical by the object's heading. Surfaces are sampled uniformly at ``density`` points per m^2 (the visible faces
only: a box's bottom face and faces against the floor are left out, as a scanner cannot see them), so the point
count of a surface is proportional to its area, like a depth-camera reconstruction resampled to a grid.

Colour model. Each object draws a base albedo from its class's palette (:data:`PALETTES`, deliberately overlapping:
wooden tables, shelves and floors share hues, so colour alone does not tell the class), then every point gets
Lambertian shading from one ceiling light, ``rho (0.35 + 0.65 max(0, n . l))`` with ``l`` the unit vector to the
light, plus N(0, 0.02^2) sensor noise, clipped to [0, 1]. Positions get N(0, (2 mm)^2) noise along the surface
normal (depth-sensor noise). Labels (:data:`CLASSES`): floor, wall, table, chair, shelf, object. Exact normals are
written (``normal.npy``); the reader uses them as given.

All draws come from ``(seed, room index)``, so room ``i`` does not depend on how many rooms are simulated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modalities.base import build_corpus

__all__ = ["CLASSES", "PALETTES", "simulate_corpus", "simulate_room"]

_GENERATOR = "modalities.scenes.simulate/furnished-rooms"
_VERSION = 2
_ROOM = "room_{:04d}"
_ROOM_PATTERN = re.compile(r"room_\d{4}")

CLASSES = ("floor", "wall", "table", "chair", "shelf", "object")
PALETTES: dict[str, list[tuple[float, float, float]]] = {
    "floor": [(0.55, 0.40, 0.25), (0.60, 0.58, 0.55), (0.35, 0.30, 0.28), (0.70, 0.55, 0.38)],
    "wall": [(0.90, 0.88, 0.82), (0.80, 0.85, 0.88), (0.88, 0.82, 0.70), (0.75, 0.78, 0.72)],
    "table": [(0.55, 0.38, 0.22), (0.70, 0.55, 0.38), (0.90, 0.90, 0.88), (0.25, 0.22, 0.20)],
    "chair": [(0.20, 0.25, 0.45), (0.60, 0.15, 0.15), (0.25, 0.22, 0.20), (0.55, 0.40, 0.25), (0.30, 0.45, 0.30)],
    "shelf": [(0.70, 0.55, 0.38), (0.90, 0.90, 0.88), (0.35, 0.25, 0.18), (0.55, 0.40, 0.25)],
    "object": [(0.85, 0.20, 0.15), (0.15, 0.40, 0.75), (0.95, 0.80, 0.20), (0.20, 0.65, 0.35), (0.90, 0.90, 0.90)],
}


class _Sampler:
    """Accumulates points sampled on the visible faces of oriented boxes."""

    def __init__(self, rng: np.random.Generator, density: float) -> None:
        self.rng, self.density = rng, density
        self.coord: list[np.ndarray] = []
        self.normal: list[np.ndarray] = []
        self.albedo: list[np.ndarray] = []
        self.label: list[np.ndarray] = []

    def quad(self, origin: np.ndarray, u: np.ndarray, v: np.ndarray, albedo: np.ndarray, label: int) -> None:
        """Points on the parallelogram ``origin + a u + b v`` (a, b in [0, 1]); normal ``u x v`` normalised."""
        area = float(np.linalg.norm(np.cross(u, v)))
        n = int(self.rng.poisson(area * self.density))
        if n == 0:
            return
        ab = self.rng.uniform(0, 1, (n, 2))
        nrm = np.cross(u, v) / area
        p = origin[None] + ab[:, :1] * u[None] + ab[:, 1:] * v[None]
        p = p + self.rng.normal(0, 0.002, (n, 1)) * nrm[None]
        self.coord.append(p)
        self.normal.append(np.tile(nrm, (n, 1)))
        self.albedo.append(np.tile(albedo, (n, 1)))
        self.label.append(np.full(n, label, np.int64))

    def box(self, centre: tuple[float, float, float], size: tuple[float, float, float], heading: float,
            albedo: np.ndarray, label: int, bottom: bool = False) -> None:
        """An axis-aligned (in its own frame) box turned by ``heading`` about z; outward normals; no bottom face
        unless ``bottom`` (a box standing on something hides it)."""
        c, s = np.cos(heading), np.sin(heading)
        ex = np.array([c, s, 0.0]) * size[0]
        ey = np.array([-s, c, 0.0]) * size[1]
        ez = np.array([0.0, 0.0, size[2]])
        lo = np.asarray(centre, float) - (ex + ey + ez) / 2
        self.quad(lo + ez, ex, ey, albedo, label)          # top, normal +z
        if bottom:
            self.quad(lo, ey, ex, albedo, label)           # bottom, normal -z
        self.quad(lo, ez, ey, albedo, label)               # -x side
        self.quad(lo + ex, ey, ez, albedo, label)          # +x side
        self.quad(lo, ex, ez, albedo, label)               # -y side
        self.quad(lo + ey, ez, ex, albedo, label)          # +y side


def _colour(rng: np.random.Generator, cls: str) -> np.ndarray:
    base = np.asarray(PALETTES[cls][rng.integers(len(PALETTES[cls]))])
    return np.clip(base + rng.normal(0, 0.04, 3), 0.02, 0.98)


def _local(centre: np.ndarray, heading: float, x: float, y: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    return centre + np.array([c * x - s * y, s * x + c * y])


def _table(smp: _Sampler, rng: np.random.Generator, xy: np.ndarray, heading: float, size: tuple[float, float]) -> None:
    col = _colour(rng, "table")
    h = rng.uniform(0.70, 0.78)
    t = 0.03
    smp.box((*xy, h - t / 2), (*size, t), heading, col, 2, bottom=True)
    leg = 0.05
    for sx in (-1, 1):
        for sy in (-1, 1):
            p = _local(xy, heading, sx * (size[0] / 2 - leg), sy * (size[1] / 2 - leg))
            smp.box((*p, (h - t) / 2), (leg, leg, h - t), heading, col, 2)


def _chair(smp: _Sampler, rng: np.random.Generator, xy: np.ndarray, heading: float) -> None:
    col = _colour(rng, "chair")
    w, d, seat = rng.uniform(0.40, 0.50), rng.uniform(0.40, 0.48), rng.uniform(0.42, 0.48)
    smp.box((*xy, seat - 0.02), (w, d, 0.04), heading, col, 3, bottom=True)
    leg = 0.035
    for sx in (-1, 1):
        for sy in (-1, 1):
            p = _local(xy, heading, sx * (w / 2 - leg), sy * (d / 2 - leg))
            smp.box((*p, (seat - 0.04) / 2), (leg, leg, seat - 0.04), heading, col, 3)
    back = rng.uniform(0.35, 0.50)
    p = _local(xy, heading, 0.0, -d / 2 + 0.015)
    smp.box((*p, seat + back / 2), (w, 0.03, back), heading, col, 3, bottom=True)


def _shelf(smp: _Sampler, rng: np.random.Generator, xy: np.ndarray, heading: float, width: float) -> None:
    col = _colour(rng, "shelf")
    depth, height, t = rng.uniform(0.30, 0.42), rng.uniform(1.2, 2.1), 0.025
    for sx in (-1, 1):
        p = _local(xy, heading, sx * (width / 2 - t / 2), 0.0)
        smp.box((*p, height / 2), (t, depth, height), heading, col, 4)
    p = _local(xy, heading, 0.0, -depth / 2 + t / 2)
    smp.box((*p, height / 2), (width - 2 * t, t, height), heading, col, 4)
    n_boards = int(rng.integers(3, 6))
    for z in np.linspace(0.05, height - t / 2, n_boards + 1):
        smp.box((*xy, z), (width - 2 * t, depth - t, t), heading, col, 4, bottom=True)
        if z < height - 0.3 and rng.uniform() < 0.6:  # things stored on the board
            bw = rng.uniform(0.08, min(0.35, width / 2))
            bx = rng.uniform(-width / 2 + bw / 2 + t, width / 2 - bw / 2 - t)
            bh = rng.uniform(0.08, 0.25)
            p = _local(xy, heading, bx, 0.0)
            smp.box((*p, z + t / 2 + bh / 2), (bw, depth * 0.6, bh), heading, _colour(rng, "object"), 5)


def simulate_room(seed: int, index: int, density: float = 2500.0) -> dict[str, np.ndarray]:
    """One furnished room: ``coord``/``color``/``normal`` float32[N, 3] and ``segment`` int64[N] (:data:`CLASSES`)."""
    rng = np.random.default_rng([int(seed), int(index), 0x5CE4E])
    smp = _Sampler(rng, density)
    w, d, h = rng.uniform(3.0, 7.0), rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.0)
    smp.quad(np.zeros(3), np.array([w, 0, 0]), np.array([0, d, 0]), _colour(rng, "floor"), 0)
    wall = _colour(rng, "wall")
    smp.quad(np.array([0, 0, 0.0]), np.array([0, 0, h]), np.array([w, 0, 0]), wall, 1)        # y = 0, normal +y
    smp.quad(np.array([0, d, 0.0]), np.array([w, 0, 0]), np.array([0, 0, h]), wall, 1)        # y = d, normal -y
    smp.quad(np.array([0, 0, 0.0]), np.array([0, d, 0]), np.array([0, 0, h]), wall, 1)        # x = 0, normal +x
    smp.quad(np.array([w, 0, 0.0]), np.array([0, 0, h]), np.array([0, d, 0]), wall, 1)        # x = w, normal -x

    taken: list[tuple[np.ndarray, float]] = []  # (centre, radius) footprints already used

    def free(xy: np.ndarray, r: float) -> bool:
        inside = r <= xy[0] <= w - r and r <= xy[1] <= d - r
        return inside and all(np.linalg.norm(xy - c) >= r + rc for c, rc in taken)

    for _ in range(int(rng.integers(1, 4))):  # shelves against a wall, facing the room
        width = rng.uniform(0.6, 1.4)
        side = int(rng.integers(4))
        along = rng.uniform(0.8, (w if side < 2 else d) - 0.8)
        off = 0.22
        xy, heading = [(np.array([along, off]), 0.0), (np.array([along, d - off]), np.pi),
                       (np.array([off, along]), -np.pi / 2), (np.array([w - off, along]), np.pi / 2)][side]
        r = width / 2
        if all(np.linalg.norm(xy - c) >= r + rc for c, rc in taken):
            _shelf(smp, rng, xy, heading, width)
            taken.append((xy, r))
    for _ in range(int(rng.integers(1, 3))):  # tables with chairs around them
        size = (rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0))
        for _try in range(30):
            if _try and _try % 5 == 0:  # no room for it: try a smaller table
                size = (max(0.6, size[0] * 0.85), max(0.5, size[1] * 0.85))
            r = float(np.hypot(*size) / 2) + 0.55
            xy = np.array([rng.uniform(r, w - r), rng.uniform(r, d - r)]) if w > 2 * r and d > 2 * r else None
            if xy is not None and free(xy, r):
                heading = rng.uniform(0, np.pi)
                _table(smp, rng, xy, heading, size)
                for _obj in range(int(rng.integers(0, 4))):
                    bw, bd = rng.uniform(0.08, min(0.3, size[0] / 3)), rng.uniform(0.08, min(0.3, size[1] / 3))
                    bh = rng.uniform(0.08, 0.3)
                    p = _local(xy, heading, rng.uniform(-size[0] / 2 + bw, size[0] / 2 - bw),
                               rng.uniform(-size[1] / 2 + bd, size[1] / 2 - bd))
                    smp.box((*p, 0.76 + bh / 2), (bw, bd, bh), heading + rng.uniform(-0.3, 0.3),
                            _colour(rng, "object"), 5)
                for k in range(int(rng.integers(1, 5))):  # chairs on the long sides, facing the table
                    sx = rng.uniform(-size[0] / 3, size[0] / 3)
                    sy = (1 if k % 2 == 0 else -1) * (size[1] / 2 + 0.3)
                    p = _local(xy, heading, sx, sy)
                    _chair(smp, rng, p, heading + (np.pi if sy > 0 else 0.0) + rng.uniform(-0.3, 0.3))
                taken.append((xy, r))
                break

    coord, normal = np.concatenate(smp.coord), np.concatenate(smp.normal)
    light = np.array([w / 2, d / 2, h]) + rng.normal(0, 0.3, 3)
    to_light = light[None] - coord
    to_light /= np.linalg.norm(to_light, axis=1, keepdims=True)
    shade = 0.35 + 0.65 * np.clip((normal * to_light).sum(1, keepdims=True), 0, None)
    color = np.clip(np.concatenate(smp.albedo) * shade + rng.normal(0, 0.02, coord.shape), 0, 1)
    return {"coord": coord.astype(np.float32), "color": color.astype(np.float32), "normal": normal.astype(np.float32),
            "segment": np.concatenate(smp.label)}


def simulate_corpus(out_dir: str | Path, n_rooms: int = 24, seed: int = 0, density: float = 2500.0) -> Path:
    """Write ``n_rooms`` rooms as Pointcept folders ``room_XXXX/{coord,color,normal,segment}.npy`` under
    ``out_dir`` once (:func:`~modalities.base.build_corpus`), and return ``out_dir``."""
    out_dir = Path(out_dir)
    spec: dict[str, Any] = {"generator": _GENERATOR, "version": _VERSION, "n_rooms": int(n_rooms), "seed": int(seed),
                            "density": float(density)}
    names = [_ROOM.format(i) for i in range(n_rooms)]
    files = [f"{n}/{k}.npy" for n in names for k in ("coord", "color", "normal", "segment")]

    def build() -> dict[str, Any]:
        import shutil

        for old in out_dir.iterdir():
            if old.is_dir() and _ROOM_PATTERN.fullmatch(old.name):
                shutil.rmtree(old)
        total = 0
        for i, name in enumerate(names):
            room = simulate_room(seed, i, density)
            folder = out_dir / name
            folder.mkdir()
            for k, v in room.items():
                np.save(folder / f"{k}.npy", v)
            total += len(room["coord"])
        return {"points": total, "classes": list(CLASSES)}

    return build_corpus(out_dir, spec, files, re.compile(r"$^"), build)
