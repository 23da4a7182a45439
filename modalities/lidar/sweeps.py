"""Indexing sweep folders into frames with poses, consecutive frame pairs in a common frame, and batching.

A folder is read as SemanticKITTI / KITTI odometry when it has ``velodyne/`` sub-folders (``sequences/SS/velodyne``
or a single ``SS/velodyne``): frames in name order, LiDAR poses from ``poses.txt`` + ``calib.txt`` when both
exist, labels from ``labels/``, true scene flow from ``flow/`` (the simulator). Any other folder: every sweep file
(``.bin``, ``.pcd.bin``, ``.pcd``, ``.ply``, ``.las``, ``.laz``) found recursively; consecutive files of one folder
form pairs with identity ego motion (no poses). A folder (sequence) with one frame pairs it with itself.

A sample is the pair (previous, current) with the previous sweep moved into the current LiDAR frame:
``x_cur = inv(T_cur) @ T_prev @ x_prev`` where ``T_k`` maps LiDAR_k to LiDAR_0.

Conventions resolved once per dataset (each ``auto`` decision printed in one line, the resolved value written back
into the data options and so into the run's ``config.yaml``):

- ``data.label_format`` (``auto`` | ``raw`` | ``train_ids``): raw SemanticKITTI ids or training ids 0..19
  (:func:`~modalities.lidar.readers.resolve_label_format`);
- ``data.point_columns`` (``auto`` | ``3`` | ``4``): float32 columns of plain ``.bin`` sweeps, ``(x, y, z)`` or
  ``(x, y, z, intensity)`` (:func:`resolve_point_columns`); 3-column points get intensity 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError, stratified_pick
from modalities.lidar.readers import (SWEEP_SUFFIXES, Sweep, bin_columns, kitti_lidar_poses, notice, read_kitti_calib,
                                      read_kitti_poses, read_semantickitti_labels, read_sweep, resolve_label_format)
from modalities.lidar.options import LidarOptions
from modalities.lidar.voxels import VoxelGrid, crop_to_range, point_dict

__all__ = ["Frame", "LidarPairs", "collate_pairs", "configure_frames", "dataset_from_config", "frame_pairs",
           "index_frames", "load_frame", "relative_pose", "resolve_point_columns"]


@dataclass(frozen=True)
class Frame:
    """One sweep of a sequence: its file, LiDAR_k -> LiDAR_0 pose (None: unknown), optional labels / flow, the
    float32 columns of a plain ``.bin`` (None: 4) and the convention of its labels (``raw`` / ``train_ids``)."""

    path: Path
    sequence: str
    pose: np.ndarray | None = None
    label: Path | None = None
    flow: Path | None = None
    columns: int | None = None
    label_format: str = "raw"


def _kitti_sequence(seq: Path) -> list[Frame]:
    bins = sorted((seq / "velodyne").glob("*.bin"))
    poses = None
    if (seq / "poses.txt").is_file() and (seq / "calib.txt").is_file():
        cam = read_kitti_poses(seq / "poses.txt")
        if len(cam) < len(bins):
            raise DataError(f"{seq / 'poses.txt'}: {len(cam)} poses for {len(bins)} sweeps in {seq / 'velodyne'}")
        poses = kitti_lidar_poses(cam, read_kitti_calib(seq / "calib.txt")["Tr"])
    frames = []
    for b in bins:
        k = int(b.stem) if b.stem.isdigit() else None
        pose = poses[k] if poses is not None and k is not None and k < len(poses) else None
        label = seq / "labels" / f"{b.stem}.label"
        flow = seq / "flow" / f"{b.stem}.npz"
        frames.append(Frame(b, str(seq), pose, label if label.is_file() else None, flow if flow.is_file() else None))
    return frames


def _plain_bin(path: Path) -> bool:
    return path.suffix.lower() == ".bin" and not path.name.endswith(".pcd.bin")


def _check_size(path: Path, columns: int | None = None) -> None:
    """``.bin`` sizes are checked when indexing (a stat, no read), so a truncated file is named before training."""
    if path.suffix.lower() != ".bin":
        return
    row = 4 * (5 if path.name.endswith(".pcd.bin") else columns or 4)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty sweep (no points)")
    if size % row:
        raise DataError(f"{path}: size {size} bytes is not a multiple of the {row}-byte row ({row // 4} float32 columns)")


def index_frames(root: str | Path, check_sizes: bool = True) -> list[Frame]:
    """Every frame under ``root`` (see the module docstring), sequences in name order. ``check_sizes``: check the
    ``.bin`` sizes against 4 columns (5 for ``.pcd.bin``) now; :func:`configure_frames` checks them against the
    resolved ``data.point_columns`` instead."""
    root = Path(root)
    if root.is_file():
        frames = [Frame(root, str(root.parent))]
    elif seqs := sorted({v.parent for v in root.rglob("velodyne") if v.is_dir()}):
        frames = [f for s in seqs for f in _kitti_sequence(s)]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SWEEP_SUFFIXES)
        if not files:
            raise DataError(f"{root}: no LiDAR sweeps (looked for {', '.join(SWEEP_SUFFIXES)} and velodyne/ folders)")
        frames = [Frame(f, str(f.parent)) for f in files]
    if check_sizes:
        for f in frames:
            _check_size(f.path)
    return frames


def resolve_point_columns(frames: list[Frame], declared: Any = "auto") -> tuple[int | None, str]:
    """(3, 4 or None, the one-line decision) for ``data.point_columns`` over the plain ``.bin`` sweeps of ``frames``
    (``.pcd.bin`` is always 5 columns; other formats carry their own fields: None, nothing to decide).

    ``auto``: the file sizes decide when they fit only one of the 12- and 16-byte rows; when every file fits both,
    :func:`~modalities.lidar.readers.bin_columns` decides on up to three of them (they must agree). A file that
    fits neither, or 3- and 4-column files mixed, is a one-line :class:`DataError`. A declared 3 or 4 is checked
    against every file's size, and against the content of up to three files where that decides clearly.
    """
    plain = [f.path for f in frames if _plain_bin(f.path)]
    if declared not in (None, "", "auto"):
        try:
            columns = int(declared)
        except (TypeError, ValueError):
            columns = 0
        if columns not in (3, 4):
            raise DataError(f"data.point_columns: auto, 3 (x, y, z) or 4 (x, y, z, intensity), not {declared!r}")
        for p in plain:
            _check_size(p, columns)
        for p in [plain[int(i)] for i in np.unique(np.linspace(0, len(plain) - 1, min(3, len(plain))).round())]:
            try:  # a declared width that the content clearly contradicts (e.g. one carried over from another corpus)
                found, why = bin_columns(p)
            except DataError:  # undecidable content: the declaration stands
                continue
            if found != columns and why != "file size":
                raise DataError(f"{p}: data.point_columns={columns} but the file reads as {found} columns ({why}); "
                                f"set data.point_columns: {found} or auto")
        return columns, f"lidar: data.point_columns={columns} (declared)"
    if not plain:
        return None, ""
    by_size: dict[int, Path] = {}
    unsure: list[Path] = []
    for p in plain:
        size = p.stat().st_size
        cands = [c for c in (3, 4, 5, 6) if size % (4 * c) == 0]
        if size == 0 or not {3, 4} & set(cands):
            bin_columns(p)  # raises the one-line error
        if len(cands) == 1:
            by_size.setdefault(cands[0], p)
        else:
            unsure.append(p)
    picks = [unsure[int(i)] for i in np.unique(np.linspace(0, len(unsure) - 1, min(3, len(unsure))).round())] \
        if unsure else []
    found = {p: bin_columns(p) for p in picks}
    seen = dict(by_size)
    for p, (c, _) in found.items():
        seen.setdefault(c, p)
    if len(seen) == 2:
        raise DataError(f"{seen[3]}: 3 float32 columns (x, y, z) while {seen[4].name} has 4; set "
                        f"data.point_columns or convert the files to one layout")
    columns = next(iter(seen))
    why = "file sizes" if columns in by_size else ""
    if found:
        why = "; ".join(filter(None, [why, f"{next(iter(found.values()))[1]} in {next(iter(found)).name}"]))
    what = ("3 (x, y, z without intensity: intensity set to 0, features [x/r, y/r, z/r_z, 0])" if columns == 3 else
            "4 (x, y, z, intensity)")
    return columns, f"lidar: data.point_columns=auto -> {what} for {len(plain)} .bin file(s) ({why})"


def configure_frames(frames: list[Frame], cfg: Mapping[str, Any] | None = None, where: str = "",
                     say: bool = True) -> tuple[list[Frame], dict[str, Any]]:
    """``frames`` with their resolved ``data.point_columns`` and ``data.label_format`` (from the data options
    ``cfg``, :class:`~modalities.lidar.options.LidarOptions` or a mapping of them), and those resolved values; each
    ``auto`` decision is printed in one line when ``say``."""
    opts = LidarOptions.of(cfg)
    columns, msg_c = resolve_point_columns(frames, opts.point_columns)
    fmt, msg_l = resolve_label_format([f.label for f in frames if f.label is not None], opts.label_format,
                                      where=where)
    if say:
        for declared, msg in ((opts.point_columns, msg_c), (opts.label_format, msg_l)):
            if msg and declared in (None, "", "auto"):
                notice(msg)
    resolved = {"point_columns": "auto" if columns is None else columns, "label_format": fmt}
    frames = [replace(f, columns=columns, label_format=fmt if fmt != "auto" else "raw") for f in frames]
    return frames, resolved


def frame_pairs(frames: list[Frame]) -> list[tuple[int, int]]:
    """(previous, current) frame indices of consecutive frames of each sequence; a lone frame pairs with itself."""
    pairs = []
    for i, f in enumerate(frames):
        if i > 0 and frames[i - 1].sequence == f.sequence:
            pairs.append((i - 1, i))
        elif i + 1 >= len(frames) or frames[i + 1].sequence != f.sequence:
            pairs.append((i, i))
    return pairs


def load_frame(frame: Frame, labels: bool = True) -> tuple[Sweep, np.ndarray | None]:
    """The sweep and its class labels (int64[N], -1 ignored) when it has a ``.label``.

    Without labels, NaN/Inf points are dropped with a one-line warning (real archives hold some); with labels
    they are an error, since the labels would no longer line up with the points.
    """
    want = labels and frame.label is not None
    sweep = read_sweep(frame.path, drop_invalid=not want, columns=frame.columns)
    y = read_semantickitti_labels(frame.label, len(sweep), frame.label_format)[0] if want else None
    return sweep, y


def relative_pose(prev: Frame, cur: Frame) -> np.ndarray:
    """LiDAR_prev -> LiDAR_cur (identity when either pose is unknown)."""
    if prev.pose is None or cur.pose is None:
        return np.eye(4)
    return np.linalg.inv(cur.pose) @ prev.pose


class LidarPairs(Dataset):
    """Consecutive sweep pairs cropped to the range of a preset, each sweep subsampled to ``max_points``.

    Items (keys ``(index, seed)`` or plain indices)::

        {"coord": float32[N, 3], "strength": float32[N], "prev_coord": float32[M, 3] (in the current frame),
         "prev_strength": float32[M], "segment"?: int64[N], "prev_flow"?: float32[M, 3] (simulator truth),
         "point_range": float32[6], "voxel_size": float32[3], "name": str}

    Split: the last ``val_fraction`` of each sequence's pairs (at least one when a sequence has 3 or more) is
    ``"val"``; the rest is ``"train"``. ``point_columns`` / ``label_format``: see :func:`configure_frames` (the
    resolved values are in :attr:`resolved`).
    """

    def __init__(self, root: str | Path, grid: VoxelGrid, split: str = "train",
                 max_points: int = LidarOptions.max_points, val_fraction: float = LidarOptions.val_fraction,
                 point_columns: Any = LidarOptions.point_columns, label_format: str = LidarOptions.label_format
                 ) -> None:
        self.frames, self.resolved = configure_frames(
            index_frames(root, check_sizes=False), {"point_columns": point_columns, "label_format": label_format},
            str(root))
        self.grid = grid
        self.max_points = int(max_points)
        pairs = frame_pairs(self.frames)
        by_seq: dict[str, list[tuple[int, int]]] = {}
        for p in pairs:
            by_seq.setdefault(self.frames[p[1]].sequence, []).append(p)
        self.pairs = []
        for seq_pairs in by_seq.values():
            n_val = max(1, int(round(len(seq_pairs) * val_fraction))) if len(seq_pairs) >= 3 else 0
            self.pairs += seq_pairs[len(seq_pairs) - n_val:] if split == "val" else seq_pairs[:len(seq_pairs) - n_val]
        if split == "val" and not self.pairs:
            raise DataError(f"{root}: no sequence has 3 or more sweeps to hold out a validation pair")

    def __len__(self) -> int:
        return len(self.pairs)

    def _sweep(self, frame: Frame, rng: np.random.Generator, transform: np.ndarray | None = None,
               labels: bool = False) -> dict[str, np.ndarray]:
        sweep, y = load_frame(frame, labels)
        xyz = sweep.xyz.astype(np.float64)
        out: dict[str, np.ndarray] = {}
        if frame.flow is not None and transform is not None:
            flow = np.zeros_like(xyz)
            f = np.load(frame.flow)
            flow[f["index"]] = f["flow"]
            out["flow"] = flow @ transform[:3, :3].T
        if transform is not None:
            xyz = xyz @ transform[:3, :3].T + transform[:3, 3]
        keep = np.flatnonzero(crop_to_range(xyz, self.grid))
        if len(keep) == 0:
            raise DataError(f"{frame.path}: no points inside data.point_range {list(self.grid.point_range)}")
        if self.max_points and len(keep) > self.max_points:
            keep = np.sort(rng.choice(keep, self.max_points, replace=False))
        out = {k: v[keep] for k, v in out.items()}
        out.update(coord=xyz[keep].astype(np.float32), strength=sweep.intensity[keep])
        if y is not None:
            out["segment"] = y[keep]
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, index_seed(key))
        p, c = self.pairs[index]
        rng = np.random.default_rng(seed)
        cur = self._sweep(self.frames[c], rng, labels=True)
        prev = self._sweep(self.frames[p], rng, transform=relative_pose(self.frames[p], self.frames[c]))
        item = {"coord": torch.from_numpy(cur["coord"]), "strength": torch.from_numpy(cur["strength"]),
                "prev_coord": torch.from_numpy(prev["coord"]), "prev_strength": torch.from_numpy(prev["strength"]),
                "point_range": torch.tensor(self.grid.point_range, dtype=torch.float32),
                "voxel_size": torch.tensor(self.grid.voxel_size, dtype=torch.float32),
                "name": str(self.frames[c].path)}
        if "segment" in cur:
            item["segment"] = torch.from_numpy(cur["segment"])
        if "flow" in prev:
            item["prev_flow"] = torch.from_numpy(prev["flow"].astype(np.float32))
        return item


def index_seed(index: int) -> int:
    return int(np.random.SeedSequence([17, index]).generate_state(1)[0])


_CAT = ("coord", "strength", "prev_coord", "prev_strength", "segment", "prev_flow")


def collate_pairs(samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Concatenate the pairs Pointcept-style: ``offset`` / ``prev_offset`` int64[B] cumulative counts; ``segment``
    and ``prev_flow`` only when every sample has them; ``seed`` int64[B] when the samples carry one."""
    batch: dict[str, Any] = {}
    for k in _CAT:
        if all(k in s for s in samples):
            batch[k] = torch.cat([s[k] for s in samples])
    batch["offset"] = torch.cumsum(torch.tensor([len(s["coord"]) for s in samples]), 0)
    batch["prev_offset"] = torch.cumsum(torch.tensor([len(s["prev_coord"]) for s in samples]), 0)
    batch["point_range"] = samples[0]["point_range"]
    batch["voxel_size"] = samples[0]["voxel_size"]
    batch["name"] = [s["name"] for s in samples]
    if all("seed" in s for s in samples):
        batch["seed"] = torch.tensor([int(s["seed"]) for s in samples], dtype=torch.int64)
    return batch


class LabelledFrames(Dataset):
    """Labelled sweeps for per-point fine-tuning (``data.labels: points``): every frame with a ``.label`` file,
    cropped to the range and subsampled to ``max_points``, split by frame in time order (per sequence: the first
    ``fractions[0]`` train, then val, then test; at least one frame each when a sequence has three).

    Items: ``{"coord", "grid_coord", "feat", "offset", "segment" int64[N] (-1 ignored)}`` (:func:`point_dict`);
    :meth:`targets` gives one row per frame (its most frequent class), for label-fraction subsets of frames.

    ``label_unit``: the unit of a label budget (``data.label_fraction``). ``"frames"`` (default, the usual "x %
    of scans" protocol) keeps a fraction of the frames; ``"points"`` keeps every frame but only a seeded, per-class
    stratified fraction of its labelled points (at least one per class present), the others ignored (-1): the
    sparse-annotation protocol, and the only one that works when the training split holds a single frame.
    """

    def __init__(self, root: str | Path, grid: VoxelGrid, split: str = "train",
                 max_points: int = LidarOptions.max_points, fractions: Sequence[float] = LidarOptions.split_fractions,
                 num_classes: int = 19, label_unit: str = LidarOptions.label_unit,
                 point_columns: Any = LidarOptions.point_columns, label_format: str = LidarOptions.label_format
                 ) -> None:
        if label_unit not in ("frames", "points"):
            raise DataError(f"data.label_unit: 'frames' or 'points', not {label_unit!r}")
        self.label_unit, self.point_fraction, self.point_seed = label_unit, 1.0, 0
        frames, self.resolved = configure_frames(
            [f for f in index_frames(root, check_sizes=False) if f.label is not None],
            {"point_columns": point_columns, "label_format": label_format}, str(root))
        if not frames:
            raise DataError(f"{root}: no labelled frames (SemanticKITTI labels/*.label beside velodyne/) for "
                            f"data.labels: points")
        by_seq: dict[str, list[Frame]] = {}
        for f in frames:
            by_seq.setdefault(f.sequence, []).append(f)
        self.frames: list[Frame] = []
        for seq in by_seq.values():
            n = len(seq)
            n_test = max(1, int(round(n * fractions[2]))) if n >= 3 else 0
            n_val = max(1, int(round(n * fractions[1]))) if n >= 3 else 0
            cut = n - n_val - n_test
            parts = {"train": seq[:cut], "val": seq[cut:n - n_test], "test": seq[n - n_test:]}
            self.frames += parts[split]
        if not self.frames:
            raise DataError(f"{root}: no labelled frame for the {split} split (a sequence needs 3 labelled frames)")
        self.grid, self.max_points, self.num_classes = grid, int(max_points), int(num_classes)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = int(key[0] if isinstance(key, tuple) else key)
        sweep, y = load_frame(self.frames[index])
        keep = np.flatnonzero(crop_to_range(sweep.xyz, self.grid))
        if self.max_points and len(keep) > self.max_points:  # a fixed subset per frame: labels stay comparable
            keep = np.sort(np.random.default_rng([23, index]).choice(keep, self.max_points, replace=False))
        item = point_dict([(torch.from_numpy(sweep.xyz[keep]), torch.from_numpy(sweep.intensity[keep]))], self.grid)
        y = y[keep]
        if self.point_fraction < 1.0:
            y = sparse_labels(y, self.point_fraction, [self.point_seed, index])
        item["segment"] = torch.from_numpy(y)
        return item

    def label_subset(self, fraction: float, seed: int = 0) -> LabelledFrames | None:
        """With ``label_unit == "points"``: these frames labelled on ``fraction`` of their points (see the class
        notes); otherwise None (the caller subsamples frames)."""
        if self.label_unit != "points":
            return None
        out = copy.copy(self)
        out.point_fraction, out.point_seed = float(fraction), int(seed)
        return out

    def targets(self) -> np.ndarray:
        out = []
        for f in self.frames:
            y = load_frame(f)[1]
            y = y[y >= 0]
            out.append(np.bincount(y).argmax() if len(y) else -1)
        return np.asarray(out, dtype=np.float32).reshape(-1, 1)


def sparse_labels(y: np.ndarray, fraction: float, seed: Any) -> np.ndarray:
    """``y`` int64[N] (-1 ignored) with only a seeded ``fraction`` of each class's points kept (at least one per
    class present; :func:`modalities.base.stratified_pick`); the rest become -1."""
    keep = stratified_pick(np.where(y >= 0, y, np.nan), fraction, np.random.default_rng(seed))
    out = np.full_like(y, -1)
    out[keep] = y[keep]
    return out


def collate_points(samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Concatenate labelled point dicts: ``offset`` int64[B] cumulative counts."""
    batch = {k: torch.cat([s[k] for s in samples]) for k in ("coord", "grid_coord", "feat", "segment")}
    batch["offset"] = torch.cumsum(torch.tensor([len(s["coord"]) for s in samples], dtype=torch.int64), 0)
    if all("seed" in s for s in samples):
        batch["seed"] = torch.tensor([int(s["seed"]) for s in samples], dtype=torch.int64)
    return batch


def dataset_from_config(cfg: Mapping[str, Any], split: str) -> LidarPairs | LabelledFrames:
    """The dataset of the data options ``cfg`` (:class:`~modalities.lidar.options.LidarOptions` or a mapping of
    them); when ``cfg`` is a mutable mapping, the resolved ``point_columns`` and ``label_format`` are written back
    into it, so that the run's ``config.yaml`` holds them and later splits reuse them."""
    opts = LidarOptions.of(cfg)
    if not opts.path:
        raise DataError("data.path: no LiDAR data given")
    conv = {"point_columns": opts.point_columns, "label_format": opts.label_format}
    ds: LidarPairs | LabelledFrames
    if opts.labels:
        if opts.labels != "points":
            raise DataError(f"data.labels: LiDAR labels come from the per-point .label files: use 'points', "
                            f"not {opts.labels!r}")
        ds = LabelledFrames(opts.path, opts.grid, split, max_points=opts.max_points, fractions=opts.split_fractions,
                            label_unit=opts.label_unit, **conv)
    else:
        if split == "test":
            raise DataError("split: LiDAR pretraining pairs have train and val splits only")
        ds = LidarPairs(opts.path, opts.grid, split, max_points=opts.max_points, val_fraction=opts.val_fraction,
                        **conv)
    if isinstance(cfg, MutableMapping):
        cfg.update(ds.resolved)
    return ds
