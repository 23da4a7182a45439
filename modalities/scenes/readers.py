"""Readers of 3D scene files into one :class:`Scene` record (coordinates, optional colour, normals and labels).

Formats (recognised by :func:`scene_format`):

- ``ply``: ScanNet-style PLY (``*_vh_clean_2.ply``): ``vertex`` elements with ``x y z`` (float), optional
  ``red green blue`` (uchar 0-255 or float 0-1), optional ``nx ny nz`` and an optional per-vertex ``label``
  (any integer type); labels may also come from a sibling ``<stem>.labels.ply`` (ScanNet's
  ``*_vh_clean_2.labels.ply``). ASCII and binary little/big endian are parsed with numpy: open3d's PLY reader
  drops ``ushort`` properties, which is the type ScanNet's labels use. A mesh (a ``face`` element after the
  vertices) without ``nx ny nz`` gets vertex normals from its faces (:func:`mesh_vertex_normals`): they follow the
  faces' winding, so the two sides of a thin table top point apart, which no estimate from points alone can do.
- ``pointcept``: a Pointcept-style scene folder with ``coord.npy`` (float[N, 3]) and optional ``color.npy``
  (0-255 or 0-1), ``normal.npy`` and ``segment.npy`` (int, -1 ignored).
- ``s3dis``: an S3DIS room folder ``<room>/<room>.txt`` (``x y z r g b`` per line, colour 0-255) with an
  ``Annotations/<class>_<k>.txt`` folder giving the labels (class order :data:`S3DIS_CLASSES`).
- ``sensaturban``: the SensatUrban crop format: ``<name>.bin`` float32[N, 6] ``x y z r g b`` (colour 0-1) and an
  optional ``<name>.label`` uint8[N] (13 classes, :data:`SENSATURBAN_CLASSES`).
- ``semantickitti``: a SemanticKITTI frame ``.../velodyne/<id>.bin`` float32[N, 4] ``x y z reflectance`` with
  optional ``.../labels/<id>.label`` uint32[N] (``& 0xFFFF`` semantic raw id, mapped to the 19 evaluated classes,
  ignored -> -1), read by :mod:`modalities.lidar.readers`. No colour: the constant-colour fallback applies.

Every reader returns the file's own values (float32 coordinates, colour scaled to [0, 1], int64 labels with -1
for ignored points); a label file whose length differs from the point count is one :class:`DataError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalities.base import DataError
from modalities.lidar.readers import CLASS_NAMES as LIDAR_CLASS_NAMES
from modalities.lidar.readers import read_bin, read_semantickitti_labels

__all__ = ["S3DIS_CLASSES", "SEMANTICKITTI_CLASSES", "SENSATURBAN_CLASSES", "Scene", "index_scenes",
           "mesh_vertex_normals", "read_ply", "read_pointcept", "read_s3dis", "read_scene", "read_semantickitti",
           "read_sensaturban", "scene_format"]

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")
SENSATURBAN_CLASSES = ("ground", "vegetation", "building", "wall", "bridge", "parking", "rail", "traffic_road",
                       "street_furniture", "car", "footpath", "bike", "water")
# SemanticKITTI's 19 evaluated classes and raw-id map are the LiDAR modality's (one copy in the library).
SEMANTICKITTI_CLASSES = LIDAR_CLASS_NAMES


@dataclass
class Scene:
    """One scene: ``coord`` float32[N, 3] (metres), ``color`` float32[N, 3] in [0, 1] or None, ``normal``
    float32[N, 3] or None, ``segment`` int64[N] (-1 = ignored) or None, ``path`` the file it came from, and
    ``sensor`` float64[3] the sensor origin where the format has one (LiDAR frames), for orienting normals."""

    coord: np.ndarray
    color: np.ndarray | None
    normal: np.ndarray | None
    segment: np.ndarray | None
    path: Path
    sensor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.coord)


# --------------------------------------------------------------------------------------------------- PLY

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _ply_vertices(path: Path) -> np.ndarray:
    """The ``vertex`` element of a PLY file as a structured array (every scalar property, any encoding)."""
    return _ply_read(path, faces=False)[0]


def _ply_read(path: Path, faces: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(vertices, faces)``: the ``vertex`` element as a structured array and, with ``faces`` and a ``face``
    element right after it, int64[F, 3] triangles (polygons split into fans), else None."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise DataError(f"{path}: not a PLY file (no 'ply' magic line)")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise DataError(f"{path}: PLY header has no 'end_header'")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                current = [words[1], int(words[2]), []]
                elements.append(current)
            elif words[0] == "property" and current is not None:
                if words[1] == "list":
                    current[2].append((words[-1], None))
                    current.append((_PLY_TYPES.get(words[2]), _PLY_TYPES.get(words[3])))
                else:
                    if words[1] not in _PLY_TYPES:
                        raise DataError(f"{path}: PLY property {words[-1]!r} has unknown type {words[1]!r}")
                    current[2].append((words[-1], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        if not elements or elements[0][0] != "vertex":
            raise DataError(f"{path}: PLY file's first element is not 'vertex'")
        _, n, props = elements[0]
        if any(t is None for _, t in props):
            raise DataError(f"{path}: PLY vertex element has a list property")
        if fmt == "ascii":
            names = [p for p, _ in props]
            rows = [f.readline().split() for _ in range(n)]
            if any(len(r) < len(names) for r in rows):
                raise DataError(f"{path}: PLY file ends before its {n} vertices")
            out = np.empty(n, dtype=[(p, t) for p, t in props])
            table = np.array([r[:len(names)] for r in rows], dtype=np.float64).reshape(n, len(names))
            for j, name in enumerate(names):
                out[name] = table[:, j]
            vertices = out
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            end = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(p, end + t) for p, t in props])
            data = f.read(n * dtype.itemsize)
            if len(data) < n * dtype.itemsize:
                raise DataError(f"{path}: PLY file ends before its {n} vertices")
            vertices = np.frombuffer(data, dtype=dtype, count=n)
        else:
            raise DataError(f"{path}: unknown PLY format {fmt!r}")
        face = elements[1] if len(elements) > 1 and elements[1][0] == "face" else None
        # a mesh: a face element of one list property (whose count / index types the header loop put in face[3])
        if not faces or face is None or len(face[2]) != 1 or face[2][0][1] is not None:
            return vertices, None
        return vertices, _ply_faces(f, path, fmt, face[1], *face[3], n)


def _ply_faces(f, path: Path, fmt: str, n_faces: int, count_type: str | None, index_type: str | None,
               n_vertices: int) -> np.ndarray:
    """int64[F', 3] triangles of a ``face`` element with one list property (polygons as fans)."""
    if count_type is None or index_type is None:
        raise DataError(f"{path}: PLY face list has an unknown count or index type")
    polys: list[np.ndarray]
    if fmt == "ascii":
        polys = []
        for _ in range(n_faces):
            words = f.readline().split()
            if not words or len(words) < 1 + int(words[0]):
                raise DataError(f"{path}: PLY file ends before its {n_faces} faces")
            polys.append(np.asarray(words[1:1 + int(words[0])], dtype=np.int64))
    else:
        end = "<" if fmt == "binary_little_endian" else ">"
        tri = np.dtype([("n", end + count_type), ("i", end + index_type, (3,))])
        data = f.read(n_faces * tri.itemsize)
        fixed = np.frombuffer(data, dtype=tri, count=len(data) // tri.itemsize)
        if len(fixed) == n_faces and (fixed["n"] == 3).all():  # triangle meshes (ScanNet): one vectorised read
            polys = [fixed["i"].astype(np.int64)]
        else:  # general polygons: walk the records
            buf, pos, polys = data + f.read(), 0, []
            cnt, idx = np.dtype(end + count_type), np.dtype(end + index_type)
            for _ in range(n_faces):
                if pos + cnt.itemsize > len(buf):
                    raise DataError(f"{path}: PLY file ends before its {n_faces} faces")
                k = int(np.frombuffer(buf, cnt, 1, pos)[0])
                pos += cnt.itemsize
                if pos + k * idx.itemsize > len(buf):
                    raise DataError(f"{path}: PLY file ends before its {n_faces} faces")
                polys.append(np.frombuffer(buf, idx, k, pos).astype(np.int64))
                pos += k * idx.itemsize
    tris = [p if p.ndim == 2 else np.stack([np.full(len(p) - 2, p[0]), p[1:-1], p[2:]], 1)
            for p in polys if p.ndim == 2 or len(p) >= 3]
    out = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if out.size and (out.min() < 0 or out.max() >= n_vertices):
        raise DataError(f"{path}: PLY face refers to a vertex outside 0..{n_vertices - 1}")
    return out


def mesh_vertex_normals(coord: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """float32[N, 3] unit vertex normals of a triangle mesh (open3d: area-weighted mean of the incident faces'
    normals, oriented by the faces' winding, so a consistently wound mesh gets consistently outward normals).
    Vertices on no face get (0, 0, 0): no orientation can be read for them."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(coord, np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(faces, np.int32)))
    mesh.compute_vertex_normals(normalized=True)
    normal = np.asarray(mesh.vertex_normals, dtype=np.float32).copy()
    used = np.zeros(len(coord), bool)
    used[np.asarray(faces, np.int64).ravel()] = True
    normal[~used] = 0.0
    return normal


def _colour01(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Colour as float32 in [0, 1]: integer colour is 0-255; float colour above 1 is taken as 0-255 too."""
    rgb = np.asarray(rgb)
    if np.issubdtype(rgb.dtype, np.integer) or (rgb.size and float(rgb.max()) > 1.0):
        rgb = rgb.astype(np.float32) / 255.0
    rgb = rgb.astype(np.float32)
    if rgb.size and (rgb.min() < 0 or rgb.max() > 1.0):
        raise DataError(f"{path}: colour values outside 0-255")
    return rgb


def _check_labels(labels: np.ndarray, n: int, label_path: Path, n_from: Path) -> np.ndarray:
    if len(labels) != n:
        raise DataError(f"{label_path}: {len(labels)} labels for the {n} points of {n_from.name}")
    return labels.astype(np.int64)


def read_ply(path: str | Path) -> Scene:
    """A ScanNet-style PLY scene (labels from the vertex ``label`` property or a sibling ``.labels.ply``)."""
    path = Path(path)
    v, faces = _ply_read(path)
    names = v.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise DataError(f"{path}: PLY vertices have no x/y/z properties")
    coord = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)
    color = _colour01(np.stack([v["red"], v["green"], v["blue"]], 1), path) if {"red", "green", "blue"} <= set(names) else None
    normal = np.stack([v["nx"], v["ny"], v["nz"]], 1).astype(np.float32) if {"nx", "ny", "nz"} <= set(names) else None
    if normal is None and faces is not None and len(faces):
        normal = mesh_vertex_normals(coord, faces)
    segment = None
    if "label" in names:
        segment = v["label"].astype(np.int64)
    else:
        sibling = path.with_name(path.name[:-len(".ply")] + ".labels.ply")
        if sibling.is_file():
            lv = _ply_vertices(sibling)
            if "label" not in (lv.dtype.names or ()):
                raise DataError(f"{sibling}: PLY vertices have no 'label' property")
            segment = _check_labels(lv["label"], len(coord), sibling, path)
    return Scene(coord, color, normal, segment, path)


# ---------------------------------------------------------------------------------------- Pointcept / S3DIS

def read_pointcept(folder: str | Path) -> Scene:
    """A Pointcept scene folder: ``coord.npy`` and optional ``color.npy``, ``normal.npy``, ``segment.npy``."""
    folder = Path(folder)

    def load(name: str) -> np.ndarray | None:
        p = folder / f"{name}.npy"
        if not p.is_file():
            return None
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{p}: not a numpy array file ({e})") from None

    coord = load("coord")
    if coord is None:
        raise DataError(f"{folder}: no coord.npy")
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise DataError(f"{folder / 'coord.npy'}: shape {coord.shape}, expected (N, 3)")
    n = len(coord)
    out = {}
    for name in ("color", "normal"):
        a = load(name)
        if a is not None and a.shape != (n, 3):
            raise DataError(f"{folder / (name + '.npy')}: shape {a.shape} for {n} points, expected ({n}, 3)")
        out[name] = a
    seg = load("segment")
    if seg is not None:
        seg = _check_labels(np.asarray(seg).reshape(-1), n, folder / "segment.npy", folder / "coord.npy")
    color = _colour01(out["color"], folder / "color.npy") if out["color"] is not None else None
    normal = np.asarray(out["normal"], dtype=np.float32) if out["normal"] is not None else None
    return Scene(np.asarray(coord, dtype=np.float32), color, normal, seg, folder)


def _read_xyzrgb(path: Path) -> np.ndarray:
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not 'x y z r g b' text ({str(e)[:80]})") from None
    if a.shape[1] < 6:
        raise DataError(f"{path}: {a.shape[1]} columns, expected x y z r g b")
    return a[:, :6]


def read_s3dis(room: str | Path) -> Scene:
    """An S3DIS room folder ``<room>/<room>.txt`` (+ ``Annotations/<class>_<k>.txt`` for labels).

    Labels: each annotation file's points are matched to the room's points by exact coordinates (S3DIS writes
    the same values in both); points no annotation covers get -1.
    """
    room = Path(room)
    txt = room / f"{room.name}.txt"
    if not txt.is_file():
        raise DataError(f"{room}: no {room.name}.txt")
    a = _read_xyzrgb(txt)
    coord, color = a[:, :3].astype(np.float32), _colour01(a[:, 3:6], txt)
    segment = None
    ann = room / "Annotations"
    if ann.is_dir():
        segment = np.full(len(a), -1, np.int64)
        keys = {tuple(r): i for i, r in enumerate(np.round(a[:, :3], 4).tolist())}
        for f in sorted(ann.glob("*.txt")):
            cls = f.stem.rsplit("_", 1)[0]
            cls = "clutter" if cls == "stairs" else cls
            if cls not in S3DIS_CLASSES:
                raise DataError(f"{f}: unknown S3DIS class {cls!r}")
            for r in np.round(_read_xyzrgb(f)[:, :3], 4).tolist():
                i = keys.get(tuple(r))
                if i is not None:
                    segment[i] = S3DIS_CLASSES.index(cls)
    return Scene(coord, color, None, segment, room)


# ------------------------------------------------------------------------------------ SensatUrban / KITTI

def _read_float_bin(path: Path, width: int) -> np.ndarray:
    size = path.stat().st_size
    if size == 0 or size % (4 * width):
        raise DataError(f"{path}: {size} bytes is not a whole number of float32 rows of {width} values")
    return np.fromfile(path, dtype=np.float32).reshape(-1, width)


def read_sensaturban(path: str | Path) -> Scene:
    """A SensatUrban crop: ``<name>.bin`` float32[N, 6] x y z r g b (0-1) and optional ``<name>.label`` uint8[N]."""
    path = Path(path)
    a = _read_float_bin(path, 6)
    label = path.with_suffix(".label")
    segment = None
    if label.is_file():
        segment = _check_labels(np.fromfile(label, dtype=np.uint8), len(a), label, path)
    rgb = a[:, 3:6]
    if rgb.min() < 0.0 or rgb.max() > 1.0:  # e.g. a KITTI .bin outside a velodyne/ folder, read 6 columns wide
        raise DataError(f"{path}: columns 4-6 hold values in [{rgb.min():.3g}, {rgb.max():.3g}], not colours in "
                        f"[0, 1]: not a SensatUrban crop (float32 x y z r g b rows)")
    return Scene(a[:, :3].copy(), rgb.astype(np.float32), None, segment, path)


def read_semantickitti(path: str | Path) -> Scene:
    """A SemanticKITTI frame (``velodyne/<id>.bin`` + optional ``labels/<id>.label``) through the LiDAR modality's
    readers: labels mapped to the 19 evaluated classes (:data:`SEMANTICKITTI_CLASSES`; ignored -> -1), no colour,
    the sensor at the origin. Reflectance is not a scene feature (colour + normal), so it is dropped."""
    path = Path(path)
    sweep = read_bin(path, columns=4)
    label = path.parent.parent / "labels" / (path.stem + ".label")
    segment = read_semantickitti_labels(label, len(sweep))[0] if label.is_file() else None
    return Scene(sweep.xyz, None, None, segment, path, sensor=np.zeros(3))


# ------------------------------------------------------------------------------------------- dispatch

def scene_format(path: str | Path) -> str | None:
    """The format of ``path`` (see the module docstring), or None if it is not a scene."""
    p = Path(path)
    if p.is_dir():
        if (p / "coord.npy").is_file():
            return "pointcept"
        if (p / f"{p.name}.txt").is_file():
            return "s3dis"
        return None
    name = p.name.lower()
    if name.endswith(".labels.ply"):
        return None
    if name.endswith(".ply"):
        return "ply"
    if name.endswith(".bin"):
        return "semantickitti" if p.parent.name == "velodyne" else "sensaturban"
    return None


_READERS = {"ply": read_ply, "pointcept": read_pointcept, "s3dis": read_s3dis, "sensaturban": read_sensaturban,
            "semantickitti": read_semantickitti}


def read_scene(path: str | Path) -> Scene:
    """Read one scene in any supported format; empty scenes and non-finite coordinates are refused in one line."""
    path = Path(path)
    fmt = scene_format(path)
    if fmt is None:
        raise DataError(f"{path}: not a scene (PLY, Pointcept folder, S3DIS room, SensatUrban or SemanticKITTI .bin)")
    scene = _READERS[fmt](path)
    if len(scene) == 0:
        raise DataError(f"{path}: the scene has no points")
    if not np.isfinite(scene.coord).all():
        raise DataError(f"{path}: non-finite coordinates")
    return scene


def index_scenes(root: str | Path) -> list[Path]:
    """Every scene under ``root`` (a scene itself, or a folder searched recursively), sorted; one line if none."""
    root = Path(root)
    if scene_format(root) is not None:
        return [root]
    if not root.is_dir():
        raise DataError(f"{root}: not a scene file or folder")
    found = []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        fmt = scene_format(p)
        if fmt is None:
            continue
        if fmt == "pointcept" or fmt == "s3dis" or p.is_file():
            if not any(q in p.parents for q in found):  # a folder scene's own files are not scenes
                found.append(p)
    if not found:
        raise DataError(f"{root}: no scenes found (PLY files, Pointcept folders with coord.npy, S3DIS rooms, "
                        f"SensatUrban .bin crops, SemanticKITTI velodyne/*.bin)")
    return found

