"""Per-point semantic probe on real SemanticKITTI sweeps, for the label-free-vs-labelled report.

:func:`semantickitti_probe`: the labelled frames of a SemanticKITTI sequence, cropped to the training range and
voxelised exactly as in pretraining (:func:`~modalities.lidar.voxels.point_dict`); frames ``train_frames`` train
a per-point probe (``pretrain.evaluate.segmentation_probe``: logistic regression and k-NN on frozen point
features, every decoder level vs the last) and ``test_frames`` test it, scored by mIoU over the 19 SemanticKITTI
classes (:data:`~modalities.lidar.readers.CLASS_NAMES`; unlabelled points are ignored). The shared data holds
labelled frames 0-2 of sequence 00: frames 0-1 train, frame 2 tests. Consecutive frames overlap heavily (0.86 m
apart), so this measures how linearly separable the classes are in feature space, not generalisation to new
places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from modalities.base import DataError, ProbeSet
from modalities.lidar.readers import CLASS_NAMES
from modalities.lidar.sweeps import configure_frames, index_frames, load_frame
from modalities.lidar.voxels import VoxelGrid, crop_to_range, grid_from_config, point_dict

__all__ = ["probe_targets", "semantickitti_probe"]


def _shared_semantickitti() -> Path:
    # <repo>/modalities/lidar/probes.py -> <repo>/../shared/data/3d/semantickitti
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "3d" / "semantickitti"


def semantickitti_probe(root: str | Path, grid: VoxelGrid, train_frames: Sequence[int] = (0, 1),
                        test_frames: Sequence[int] = (2,), max_points: int = 0, seed: int = 0,
                        label_format: str = "auto", point_columns: Any = "auto") -> ProbeSet:
    """Point dicts and labels of the labelled frames of the first sequence under ``root`` (see the module doc).

    ``max_points`` > 0 subsamples each frame (fixed ``seed``) as pretraining does with ``data.max_points``, so the
    probe sees the point density the encoder was trained on. ``label_format`` / ``point_columns``: the
    conventions of the files (``auto``: decided from them, one printed line each; see
    :func:`~modalities.lidar.sweeps.configure_frames`).
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

    def scene(i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        sweep, y = load_frame(frames[i])
        keep = np.flatnonzero(crop_to_range(sweep.xyz, grid))
        if max_points and len(keep) > max_points:
            keep = np.sort(np.random.default_rng([seed, i]).choice(keep, max_points, replace=False))
        pts = point_dict([(torch.from_numpy(sweep.xyz[keep]), torch.from_numpy(sweep.intensity[keep]))], grid)
        return pts, torch.from_numpy(y[keep])

    train = [scene(i) for i in train_frames]
    test = [scene(i) for i in test_frames]
    return ProbeSet([p for p, _ in train], [y for _, y in train], [p for p, _ in test], [y for _, y in test],
                    task="segmentation", class_names=CLASS_NAMES,
                    description=(f"SemanticKITTI {Path(first).name}: per-point classes, frames "
                                 f"{list(train_frames)} train, {list(test_frames)} test (mIoU, 19 classes)"),
                    meta={"ignore_index": -1})


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None) -> dict[str, ProbeSet]:
    """The SemanticKITTI probe from ``data.probe_path``, else ``--data`` when it holds labelled real frames (the
    simulated default, marked by its ``corpus.json``, is skipped), else the shared sample (frames 0-2 of sequence
    00) beside the repository; no probe when none of them exists. The run's ``data.label_format`` and
    ``data.point_columns`` apply to ``--data``; another folder's conventions are decided from its own files."""
    grid = grid_from_config(data_cfg)
    real_data = data_path if data_path is not None and not (Path(data_path) / "corpus.json").exists() else None
    for c in (data_cfg.get("probe_path"), real_data, _shared_semantickitti()):
        if not c or not Path(c).is_dir():
            continue
        if sum(f.label is not None for f in index_frames(c, check_sizes=False)) >= 3:
            max_points = int(data_cfg.get("max_points") or 0)
            same = real_data is not None and Path(c).resolve() == Path(real_data).resolve()
            conv = {k: (data_cfg.get(k) or "auto") if same else "auto" for k in ("label_format", "point_columns")}
            return {"semantickitti_points": semantickitti_probe(c, grid, max_points=max_points, **conv)}
    return {}
