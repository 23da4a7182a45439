"""Per-point semantic probes for the label-free-vs-labelled report.

Each probe set holds labelled sweeps cropped to the training range and voxelised exactly as in pretraining
(:func:`~modalities.lidar.voxels.point_dict`); its training sweeps fit a per-point probe
(``pretrain.evaluate.segmentation_probe``: logistic regression and k-NN on frozen point features, every decoder
level vs the last) and its test sweeps score it by mIoU over the SemanticKITTI classes present in its labels
(:data:`~modalities.lidar.readers.CLASS_NAMES`; unlabelled points are ignored). Where the labelled sweeps come from
(:func:`probe_targets`; every probe set says so in its ``source``):

- ``data.probe_data`` (``--probe-data PATH``) given: :func:`semantickitti_probe` on the labelled frames of the first
  labelled sequence of that folder (frames 0-1 train, frame 2 tests), and nothing else;
- not given: :func:`simulated_streets_probe`, one sweep of each of four streets of the ray-cast simulator
  (:mod:`modalities.lidar.simulate`) with its exact per-point classes, drawn with a seed (:data:`PROBE_SEED`) that
  the embedded training corpus (seed 0) never uses and cached under ``modalities.base.cache_root()/lidar``: three
  streets train, the fourth tests; plus :func:`semantickitti_probe` on ``--data`` when it holds at least three
  labelled real frames (a simulated corpus, marked by its ``corpus.json``, is not probed twice).

Consecutive real frames overlap heavily (0.86 m apart in SemanticKITTI), so a probe on frames 0-2 measures how
linearly separable the classes are in feature space, not generalisation to new places; the simulated probe tests
on a street it did not train on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from modalities.base import DataError, ProbeSet, cache_root, probe_folder
from modalities.lidar.readers import CLASS_NAMES
from modalities.lidar.sweeps import Frame, configure_frames, index_frames, load_frame
from modalities.lidar.options import LidarOptions
from modalities.lidar.voxels import VoxelGrid, crop_to_range, point_dict

__all__ = ["PROBE_SEED", "PROBE_STREETS", "check_probe_options", "classes_present",
           "probe_targets", "semantickitti_probe", "simulated_streets_probe"]

PROBE_SEED = 7      # simulated probe streets use sequence seeds 7000..; the embedded training corpus 0..3
PROBE_STREETS = 4   # one sweep each: the first three train, the last tests


def check_probe_options(data_cfg: Mapping[str, Any]) -> LidarOptions:
    """The typed data options of ``data_cfg``; a one-line :class:`DataError` for a probe folder that is missing or
    given under an earlier option name (checked first: such a name is otherwise only an unknown option)."""
    probe_folder(data_cfg)
    return LidarOptions.of(data_cfg)


def classes_present(labels: Sequence[Any]) -> list[str]:
    """Names of the SemanticKITTI classes that occur in ``labels`` (per-point class ids; -1 ignored), in id order."""
    ids = sorted({int(v) for y in labels for v in np.unique(np.asarray(y)) if int(v) >= 0})
    return [CLASS_NAMES[i] for i in ids]


def _sweep_points(frame: Frame, grid: VoxelGrid, max_points: int, seed: Sequence[int]
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A labelled sweep cropped to ``grid``'s range, subsampled to ``max_points`` (> 0) with ``seed``."""
    sweep, y = load_frame(frame)
    keep = np.flatnonzero(crop_to_range(sweep.xyz, grid))
    if max_points and len(keep) > max_points:
        keep = np.sort(np.random.default_rng(list(seed)).choice(keep, max_points, replace=False))
    pts = point_dict([(torch.from_numpy(sweep.xyz[keep]), torch.from_numpy(sweep.intensity[keep]))], grid)
    return pts, torch.from_numpy(y[keep])


def _probe_set(train: list[tuple[dict, torch.Tensor]], test: list[tuple[dict, torch.Tensor]], description: str,
               source: str) -> ProbeSet:
    names = classes_present([y for _, y in train + test])
    return ProbeSet([p for p, _ in train], [y for _, y in train], [p for p, _ in test], [y for _, y in test],
                    task="segmentation", class_names=CLASS_NAMES,
                    description=f"{description}; {len(names)} classes present: {', '.join(names)}",
                    meta={"ignore_index": -1}, source=source)


def semantickitti_probe(root: str | Path, grid: VoxelGrid, train_frames: Sequence[int] = (0, 1),
                        test_frames: Sequence[int] = (2,), max_points: int = LidarOptions.max_points, seed: int = 0,
                        label_format: str = LidarOptions.label_format, point_columns: Any = LidarOptions.point_columns,
                        source: str = "") -> ProbeSet:
    """Point dicts and labels of the labelled frames of the first sequence under ``root`` (see the module doc).

    ``max_points`` > 0 subsamples each frame (fixed ``seed``) as pretraining does with ``data.max_points``, so the
    probe sees the point density the encoder was trained on. ``label_format`` / ``point_columns``: the
    conventions of the files (``auto``: decided from them, one printed line each; see
    :func:`~modalities.lidar.sweeps.configure_frames`). ``source``: where the frames came from, for the report.
    """
    frames = [f for f in index_frames(root, check_sizes=False) if f.label is not None]
    if not frames:
        raise DataError(f"{root}: no labelled SemanticKITTI frames (labels/*.label next to velodyne/)")
    frames = configure_frames(frames, {"label_format": label_format, "point_columns": point_columns}, str(root))[0]
    first = frames[0].sequence
    frames = [f for f in frames if f.sequence == first]
    need = max([*train_frames, *test_frames]) + 1
    if len(frames) < need:
        raise DataError(f"{first}: {len(frames)} labelled frames, the probe needs {need}")
    train = [_sweep_points(frames[i], grid, max_points, (seed, i)) for i in train_frames]
    test = [_sweep_points(frames[i], grid, max_points, (seed, i)) for i in test_frames]
    return _probe_set(train, test, f"SemanticKITTI {Path(first).name}: per-point classes, frames "
                                   f"{list(train_frames)} train, {list(test_frames)} test",
                      source or f"labelled frames of {Path(root).resolve()}")


def simulated_streets_probe(cache_dir: str | Path, grid: VoxelGrid, max_points: int = LidarOptions.max_points,
                            seed: int = PROBE_SEED, n_streets: int = PROBE_STREETS, n_azimuth: int = 1024) -> ProbeSet:
    """One sweep of each of ``n_streets`` simulated streets (:func:`~modalities.lidar.simulate.simulate_corpus`
    with ``seed``, built once into ``cache_dir``; 64 beams x ``n_azimuth``, as the embedded training corpus), per-point
    labels the simulator's SemanticKITTI raw ids through the reader's learning map: every street but the last
    trains, the last tests (a street the probe never saw)."""
    from modalities.lidar.simulate import simulate_corpus

    if n_streets < 2:
        raise DataError(f"simulated probe: at least 2 streets (one to train, one to test), got {n_streets}")
    root = simulate_corpus(Path(cache_dir), n_sequences=n_streets, n_frames=1, seed=seed, n_azimuth=n_azimuth)
    frames = configure_frames(index_frames(root, check_sizes=False), {"label_format": "raw", "point_columns": 4},
                              str(root), say=False)[0]
    sweeps = [_sweep_points(f, grid, max_points, (seed, i)) for i, f in enumerate(frames)]
    return _probe_set(sweeps[:-1], sweeps[-1:],
                      f"simulated streets (seed {seed}, not the training streets): one sweep of each of streets "
                      f"0-{n_streets - 2} trains, street {n_streets - 1} tests",
                      f"simulated streets (seed {seed}): {n_streets} sweeps, "
                      f"{len(classes_present([y for _, y in sweeps]))} classes")


def _labelled_frames(path: Path) -> int:
    return sum(f.label is not None for f in index_frames(path, check_sizes=False))


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None) -> dict[str, ProbeSet]:
    """``semantickitti_points`` from ``data.probe_data`` when it is given (a one-line error when that folder has
    fewer than three labelled frames); otherwise ``simulated_streets``, plus ``semantickitti_points`` from ``--data``
    when it holds labelled real frames. The run's ``data.label_format`` and ``data.point_columns`` apply to
    ``--data``; another folder's conventions are decided from its own files."""
    opts = check_probe_options(data_cfg)
    grid, max_points = opts.grid, opts.max_points
    if opts.probe_data:
        root = Path(opts.probe_data).expanduser()
        if not root.is_dir():
            raise DataError(f"data.probe_data: {root} is not a folder")
        if _labelled_frames(root) < 3:
            raise DataError(f"data.probe_data: {root} holds fewer than 3 labelled frames "
                            f"(sequences/SS/velodyne/*.bin with labels/*.label), which the SemanticKITTI probe needs")
        same = data_path is not None and root.resolve() == Path(data_path).resolve()  # the run's own files
        conv = {k: opts[k] if same else "auto" for k in ("label_format", "point_columns")}
        return {"semantickitti_points": semantickitti_probe(root, grid, max_points=max_points,
                                                            source=f"--probe-data {root.resolve()}", **conv)}
    out = {"simulated_streets": simulated_streets_probe(cache_root() / "lidar" / "probe_streets", grid, max_points)}
    if data_path is not None and Path(data_path).is_dir() and not (Path(data_path) / "corpus.json").exists():
        if _labelled_frames(Path(data_path)) >= 3:
            conv = {k: opts[k] for k in ("label_format", "point_columns")}
            out["semantickitti_points"] = semantickitti_probe(
                data_path, grid, max_points=max_points,
                source=f"labelled frames of --data {Path(data_path).resolve()}", **conv)
    return out
