"""Labelled point-segmentation probe sets for the label-free-vs-labelled report (MSM's protocol: frozen per-point
features of every decoder level, linear probe and nearest-neighbour mIoU; see ``pretrain.evaluate``).

Where the labelled data come from (:func:`probe_targets`; every probe set says so in its ``source``):

- ``data.probe_data`` (``--probe-data PATH``) given: the real-data probes on that folder only.
  :func:`sensaturban_probe` reads ``sensaturban/birmingham_block_0_0002.bin`` (+ ``.label``) below it and splits the
  crop in two spatial parts by a plane x = cut or y = cut (:func:`spatial_halves`; on that crop y at its 60 %
  quantile, the split that keeps 5 of its 7 classes on both sides), one part trains the probe, the other tests it;
  :func:`semantickitti_probe` reads ``semantickitti/sequences/00/velodyne`` frames 0-1 (train) and 2 (test). A
  folder holding neither is probed as a folder of labelled scenes (:func:`corpus_probe`).
- not given: :func:`simulated_rooms_probe`, rooms of the room simulator (:mod:`modalities.scenes.simulate`) with its
  exact per-point classes, drawn with a seed (:data:`PROBE_SEED`) that the embedded training corpus (seed 0) never
  uses and cached under ``modalities.base.cache_root()/scenes``; plus, when ``--data`` is a real corpus (not a
  simulated one, marked by its ``corpus.json``) with labelled scenes, :func:`corpus_probe` on them.

Each probe input is a one-scene point dictionary grid-sampled at the probe's grid size (first point per voxel,
the labels of those points), so the probe scores one point per voxel, as Pointcept's validation does. Probe
descriptions name the classes present in the probe's labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet, probe_folder
from modalities.scenes.options import OUTDOOR_GRID, ScenesOptions
from modalities.scenes.points import ViewAugment, point_dict, prepare_scene
from modalities.scenes.readers import (SEMANTICKITTI_CLASSES, SENSATURBAN_CLASSES, index_scenes, read_scene)

__all__ = ["SENSATURBAN_CROP", "KITTI_FRAMES", "PROBE_DENSITY", "PROBE_SEED",
           "check_probe_options", "class_ids", "classes_present", "corpus_probe", "probe_targets",
           "semantickitti_probe", "sensaturban_probe", "simulated_rooms_probe", "spatial_halves"]

SENSATURBAN_CROP = "sensaturban/birmingham_block_0_0002.bin"
KITTI_FRAMES = "semantickitti/sequences/00/velodyne"
PROBE_SEED = 7001      # the simulated probe rooms; the embedded training corpus uses seed 0
PROBE_DENSITY = 800.0  # points per m^2, the embedded training corpus's density (modalities.scenes.default_data)


def check_probe_options(data_cfg: Mapping[str, Any]) -> ScenesOptions:
    """The typed data options of ``data_cfg``; a one-line :class:`DataError` for a probe folder that is missing or
    given under an earlier option name (checked first: such a name is otherwise only an unknown option)."""
    probe_folder(data_cfg)
    return ScenesOptions.of(data_cfg)


def class_ids(labels: Sequence[Any]) -> list[int]:
    """The sorted class ids (>= 0) that occur in ``labels``, a list of per-point label arrays or tensors."""
    return sorted({int(v) for y in labels for v in np.unique(np.asarray(y)) if int(v) >= 0})


def classes_present(labels: Sequence[Any], class_names: Sequence[str] = ()) -> str:
    """``"6 classes present: floor, wall, ..."``: the classes that occur in ``labels`` (arrays or tensors of per-point
    class ids; negative ids are ignored), named by ``class_names`` where it names them, else by their ids."""
    ids = class_ids(labels)
    names = [class_names[i] if i < len(class_names) else str(i) for i in ids]
    return f"{len(ids)} class{'' if len(ids) == 1 else 'es'} present: {', '.join(names)}"


def spatial_halves(coord: np.ndarray, segment: np.ndarray, min_points: int = 30,
                   quantiles: Sequence[float] = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)) -> tuple[np.ndarray, np.ndarray]:
    """bool masks (train, test) of a split by a plane ``x = cut`` or ``y = cut``, ``cut`` at one of the
    ``quantiles`` of that coordinate: the split that leaves the most classes with at least ``min_points`` labelled
    points on both sides, ties broken towards the median (then x). A plain median split of the SensatUrban crop
    puts all of its building points on one side."""
    best = None
    for q in sorted(quantiles, key=lambda v: (abs(v - 0.5), v)):
        for axis in (0, 1):
            left = coord[:, axis] < np.quantile(coord[:, axis], q)
            both = sum(1 for c in np.unique(segment[segment >= 0])
                       if (segment[left] == c).sum() >= min_points and (segment[~left] == c).sum() >= min_points)
            if best is None or both > best[0]:
                best = (both, left)
    return best[1], ~best[1]


def _probe_dict(coord: np.ndarray, color: np.ndarray | None, normal: np.ndarray, segment: np.ndarray,
                grid_size: float) -> dict[str, Any]:
    return point_dict(coord, color, normal, grid_size, segment)


def _segmentation_set(train: list[dict[str, Any]], test: list[dict[str, Any]], class_names: Sequence[str],
                      description: str, source: str) -> ProbeSet:
    """A segmentation :class:`ProbeSet` of point dicts; the description ends with the classes present."""
    y_train, y_test = [x["segment"].numpy() for x in train], [x["segment"].numpy() for x in test]
    return ProbeSet(train, y_train, test, y_test, task="segmentation", class_names=tuple(class_names),
                    description=f"{description}; {classes_present(y_train + y_test, class_names)}", source=source)


def sensaturban_probe(path: str | Path, grid_size: float = OUTDOOR_GRID["sensaturban"], source: str = "") -> ProbeSet:
    """Train on one spatial half of a labelled SensatUrban crop, test on the other (:func:`spatial_halves`)."""
    scene = read_scene(path)
    if scene.segment is None:
        raise DataError(f"{path}: no .label file beside the crop")
    s = prepare_scene(scene, grid_size)
    train, test = spatial_halves(s.coord, s.segment)
    parts = [_probe_dict(s.coord[m], s.color[m], s.normal[m], s.segment[m], grid_size) for m in (train, test)]
    return _segmentation_set([parts[0]], [parts[1]], SENSATURBAN_CLASSES,
                             f"SensatUrban crop {Path(path).name}: per-point classes, the points on one side of a "
                             f"plane train, the rest test ({grid_size} m voxels)",
                             source or f"SensatUrban crop {Path(path).resolve()}")


def semantickitti_probe(velodyne_dir: str | Path, train: Sequence[str] = ("000000", "000001"),
                        test: Sequence[str] = ("000002",), grid_size: float = OUTDOOR_GRID["semantickitti"],
                        source: str = "") -> ProbeSet:
    """SemanticKITTI frames: ``train`` frames fit the probe, ``test`` frames score it (the classes present in
    their labels, among SemanticKITTI's 19)."""
    velodyne_dir = Path(velodyne_dir)

    def frames(ids: Sequence[str]) -> list[dict[str, Any]]:
        out = []
        for i in ids:
            scene = read_scene(velodyne_dir / f"{i}.bin")
            if scene.segment is None:
                raise DataError(f"{velodyne_dir.parent / 'labels' / (i + '.label')}: label file missing")
            s = prepare_scene(scene, grid_size)
            out.append(_probe_dict(s.coord, None, s.normal, s.segment, grid_size))
        return out

    return _segmentation_set(frames(train), frames(test), SEMANTICKITTI_CLASSES,
                             f"SemanticKITTI {velodyne_dir.parent.name}: frames {', '.join(train)} train, "
                             f"{', '.join(test)} test ({grid_size} m voxels, no colour: constant colour channels)",
                             source or f"SemanticKITTI frames {velodyne_dir.resolve()}")


def corpus_probe(root: str | Path, grid_size: float, max_scenes: int = ScenesOptions.probe_scenes,
                 max_points: int = ScenesOptions.probe_max_points,
                 class_names: Sequence[str] = (), source: str = "") -> ProbeSet | None:
    """Labelled scenes of a corpus: the first two thirds of (at most ``max_scenes``) labelled scenes train, the
    rest test; each scene is cropped to its ``max_points`` points nearest its centre. None if fewer than two scenes
    have labels."""
    paths = index_scenes(root)
    scenes = []
    for p in paths:
        scene = read_scene(p)
        if scene.segment is not None:
            scenes.append(scene)
        if len(scenes) >= max_scenes:
            break
    if len(scenes) < 2:
        return None
    dicts = []
    for scene in scenes:
        s = prepare_scene(scene, grid_size)
        centre = (s.coord.min(0) + s.coord.max(0)) / 2
        idx = ViewAugment.crop_indices(s.coord, centre, min(max_points, len(s.coord)))
        dicts.append(_probe_dict(s.coord[idx], None if s.color is None else s.color[idx], s.normal[idx],
                                 s.segment[idx], grid_size))
    n_train = max(1, int(round(len(dicts) * 2 / 3)))
    tr, te = dicts[:n_train], dicts[n_train:]
    return _segmentation_set(tr, te, class_names,
                             f"labelled scenes of {Path(root).name}: {len(tr)} train, {len(te)} test "
                             f"({grid_size} m voxels, at most {max_points} points each)",
                             source or f"labelled scenes of {Path(root).resolve()}")


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def simulated_rooms_probe(cache_dir: str | Path, grid_size: float, n_rooms: int = ScenesOptions.probe_rooms,
                          max_points: int = ScenesOptions.probe_max_points,
                          seed: int = PROBE_SEED, density: float = PROBE_DENSITY) -> ProbeSet:
    """Rooms ``0 .. n_rooms - 1`` of the room simulator with ``seed`` (built once into ``cache_dir``,
    :func:`~modalities.scenes.simulate.simulate_corpus`), per-point labels the simulator's classes
    (:data:`~modalities.scenes.simulate.CLASSES`). The first two thirds of the rooms train, the rest test (new rooms,
    not new views of the training rooms). Each room gives four probe scenes: its ``max_points`` points nearest (in
    x-y) the centres of its four quadrants, so that walls, shelves and furniture all appear (a crop at a room's
    centre is mostly floor)."""
    from modalities.scenes.simulate import CLASSES, simulate_corpus

    if n_rooms < 2:
        raise DataError(f"data.probe_rooms: at least 2 rooms (one to train, one to test), got {n_rooms}")
    root = simulate_corpus(Path(cache_dir), n_rooms=n_rooms, seed=seed, density=density)
    rooms = []
    for path in index_scenes(root)[:n_rooms]:
        s = prepare_scene(read_scene(path), grid_size)
        lo, hi = s.coord.min(0), s.coord.max(0)
        crops = []
        for qx, qy in ((0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25)):
            idx = ViewAugment.crop_indices(s.coord, lo + (hi - lo) * np.array([qx, qy, 0.5]),
                                           min(max_points, len(s.coord)))
            crops.append(_probe_dict(s.coord[idx], s.color[idx], s.normal[idx], s.segment[idx], grid_size))
        rooms.append(crops)
    n_train = max(1, min(n_rooms - 1, int(round(n_rooms * 2 / 3))))
    train = [c for room in rooms[:n_train] for c in room]
    test = [c for room in rooms[n_train:] for c in room]
    ps = _segmentation_set(train, test, CLASSES,
                           f"simulated furnished rooms (seed {seed}, not the training rooms): rooms "
                           f"{_span(0, n_train - 1)} train, {_span(n_train, n_rooms - 1)} test, 4 quadrant crops of "
                           f"at most {max_points} points per room ({grid_size} m voxels)", "")
    ps.source = f"simulated rooms (seed {seed}): {n_rooms} rooms, {len(class_ids(ps.y_train + ps.y_test))} classes"
    return ps


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None) -> dict[str, ProbeSet]:
    """The probes named in ``data.probes`` (``rooms``, ``corpus``, ``sensaturban``, ``semantickitti``) that apply
    (see the module doc): with ``data.probe_data``, the real-data probes on that folder (a one-line error when it
    holds none); without it, the simulated rooms, plus the labelled scenes of a real ``--data``."""
    from modalities.base import cache_root

    opts = check_probe_options(data_cfg)
    names, grid, grids, max_points = opts.probes, opts.grid_size, opts.probe_grid_size, opts.probe_max_points
    out: dict[str, ProbeSet] = {}
    if opts.probe_data:
        root = Path(opts.probe_data).expanduser()
        if not root.exists():
            raise DataError(f"data.probe_data: {root} does not exist")
        source = f"--probe-data {root.resolve()}"
        layouts = {"sensaturban": root / SENSATURBAN_CROP, "semantickitti": root / KITTI_FRAMES / "000002.bin"}
        if "sensaturban" in names and layouts["sensaturban"].is_file():
            out["sensaturban"] = sensaturban_probe(root / SENSATURBAN_CROP, grids["sensaturban"], source)
        if "semantickitti" in names and layouts["semantickitti"].is_file():
            out["semantickitti"] = semantickitti_probe(root / KITTI_FRAMES, grid_size=grids["semantickitti"],
                                                       source=source)
        if "corpus" in names and not any(f.is_file() for f in layouts.values()):  # a folder of labelled scenes
            try:
                ps = corpus_probe(root, grid, max_scenes=opts.probe_scenes,
                                  max_points=max_points, source=source)
            except DataError as e:  # no scenes at all: say which option pointed there
                raise DataError(f"data.probe_data: {e}") from None
            if ps is None:
                raise DataError(f"data.probe_data: {root}: fewer than 2 labelled scenes, and no {SENSATURBAN_CROP} "
                                f"or {KITTI_FRAMES}/00000[0-2].bin below it")
            out["corpus"] = ps
        return out
    if "rooms" in names:
        out["rooms"] = simulated_rooms_probe(cache_root() / "scenes" / "probe_rooms", grid,
                                             n_rooms=opts.probe_rooms, max_points=max_points)
    if "corpus" in names and data_path is not None and not (Path(data_path) / "corpus.json").is_file():
        ps = corpus_probe(data_path, grid, max_scenes=opts.probe_scenes, max_points=max_points,
                          source=f"labelled scenes of --data {Path(data_path).resolve()}")
        if ps is not None:
            out["corpus"] = ps
    return out
