"""Labelled point-segmentation probe sets for the label-free-vs-labelled report (MSM's protocol: frozen per-point
features of every decoder level, linear probe and nearest-neighbour mIoU; see ``pretrain/evaluate.py``).

- :func:`sensaturban_probe`: the labelled SensatUrban crop (UAV photogrammetry, Birmingham; 15 x 12 m) split in
  two spatial parts by a plane x = cut or y = cut (:func:`spatial_halves`; on this crop y at its 60 % quantile,
  the split that keeps 5 of its 7 classes on both sides); one part trains the probe, the other tests it.
- :func:`semantickitti_probe`: SemanticKITTI sequence 00, frames 0 and 1 train, frame 2 tests (19 classes).
- :func:`corpus_probe`: labelled scenes of the pretraining corpus (the simulated rooms by default): the first two
  thirds train, the rest test.

Each probe input is a one-scene point dictionary grid-sampled at the probe's grid size (first point per voxel,
the labels of those points), so the probe scores one point per voxel, as Pointcept's validation does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet
from modalities.scenes.points import ViewAugment, point_dict, prepare_scene
from modalities.scenes.readers import (SEMANTICKITTI_CLASSES, SENSATURBAN_CLASSES, index_scenes, read_scene)

__all__ = ["SENSATURBAN_CROP", "KITTI_FRAMES", "corpus_probe", "probe_targets", "semantickitti_probe",
           "sensaturban_probe", "shared_3d_root", "spatial_halves"]

SENSATURBAN_CROP = "sensaturban/birmingham_block_0_0002.bin"
KITTI_FRAMES = "semantickitti/sequences/00/velodyne"
OUTDOOR_GRID = {"sensaturban": 0.1, "semantickitti": 0.2}  # metres; 2 cm indoor voxels would be ~10^6 per frame


def shared_3d_root() -> Path:
    """``<repo>/../shared/data/3d`` (test and benchmark fixtures, never shipped)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "3d"


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


def sensaturban_probe(path: str | Path, grid_size: float = OUTDOOR_GRID["sensaturban"]) -> ProbeSet:
    """Train on one spatial half of a labelled SensatUrban crop, test on the other (:func:`spatial_halves`)."""
    scene = read_scene(path)
    if scene.segment is None:
        raise DataError(f"{path}: no .label file beside the crop")
    s = prepare_scene(scene, grid_size)
    train, test = spatial_halves(s.coord, s.segment)
    parts = [_probe_dict(s.coord[m], s.color[m], s.normal[m], s.segment[m], grid_size) for m in (train, test)]
    return ProbeSet([parts[0]], [parts[0]["segment"].numpy()], [parts[1]], [parts[1]["segment"].numpy()],
                    task="segmentation", class_names=SENSATURBAN_CLASSES,
                    description=f"SensatUrban crop {Path(path).name}: per-point classes, the points on one side "
                                f"of a plane train, the rest test ({grid_size} m voxels)")


def semantickitti_probe(velodyne_dir: str | Path, train: Sequence[str] = ("000000", "000001"),
                        test: Sequence[str] = ("000002",), grid_size: float = OUTDOOR_GRID["semantickitti"]) -> ProbeSet:
    """SemanticKITTI frames: ``train`` frames fit the probe, ``test`` frames score it (19 classes)."""
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

    xtr, xte = frames(train), frames(test)
    return ProbeSet(xtr, [x["segment"].numpy() for x in xtr], xte, [x["segment"].numpy() for x in xte],
                    task="segmentation", class_names=SEMANTICKITTI_CLASSES,
                    description=f"SemanticKITTI seq 00: frames {', '.join(train)} train, {', '.join(test)} test "
                                f"({grid_size} m voxels, no colour: constant colour channels)")


def corpus_probe(root: str | Path, grid_size: float, max_scenes: int = 6, max_points: int = 20000,
                 class_names: Sequence[str] = ()) -> ProbeSet | None:
    """Labelled scenes of a corpus: the first two thirds of (at most ``max_scenes``) labelled scenes train, the
    rest test; each scene is cropped to its ``max_points`` points nearest its centre. None if no scene has labels."""
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
    return ProbeSet(tr, [x["segment"].numpy() for x in tr], te, [x["segment"].numpy() for x in te],
                    task="segmentation", class_names=tuple(class_names),
                    description=f"labelled scenes of the corpus: {len(tr)} train, {len(te)} test "
                                f"({grid_size} m voxels, at most {max_points} points each)")


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None) -> dict[str, ProbeSet]:
    """The probes named in ``data.probes`` (``corpus``, ``sensaturban``, ``semantickitti``); the real ones are read
    from ``data.probe_root`` (default ``<repo>/../shared/data/3d``) and left out when their files are absent."""
    names = list(data_cfg.get("probes") or ("corpus", "sensaturban", "semantickitti"))
    root = Path(data_cfg.get("probe_root") or shared_3d_root())
    grids = {**OUTDOOR_GRID, **dict(data_cfg.get("probe_grid_size") or {})}
    out: dict[str, ProbeSet] = {}
    for name in names:
        if name == "corpus":
            if data_path is not None:
                from modalities.scenes.simulate import CLASSES

                ps = corpus_probe(data_path, float(data_cfg.get("grid_size", 0.02)),
                                  max_scenes=int(data_cfg.get("probe_scenes", 6)),
                                  max_points=int(data_cfg.get("probe_max_points", 20000)),
                                  class_names=CLASSES if (Path(data_path) / "corpus.json").is_file() else ())
                if ps is not None:
                    out["corpus"] = ps
        elif name == "sensaturban":
            if (root / SENSATURBAN_CROP).is_file():
                out["sensaturban"] = sensaturban_probe(root / SENSATURBAN_CROP, float(grids["sensaturban"]))
        elif name == "semantickitti":
            if (root / KITTI_FRAMES / "000002.bin").is_file():
                out["semantickitti"] = semantickitti_probe(root / KITTI_FRAMES,
                                                           grid_size=float(grids["semantickitti"]))
        else:
            raise DataError(f"data.probes: unknown probe {name!r} (corpus, sensaturban, semantickitti)")
    return out
