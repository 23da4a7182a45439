"""The scene dataset: indexed scene files read lazily, grid-sampled once per process, cropped into samples."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from modalities.base import DataError
from modalities.scenes.points import PreparedScene, ViewAugment, point_dict, prepare_scene, two_views
from modalities.scenes.readers import read_scene

__all__ = ["SceneDataset", "split_scenes"]


def split_scenes(paths: Sequence[Path], split: str, val_fraction: float) -> list[Path]:
    """Scenes of a split: the last ``ceil(val_fraction * n)`` scenes (in sorted order) are held out when there are
    at least two; a single scene serves both splits (the held-out batch is then only a label-free monitor)."""
    paths = list(paths)
    if split not in ("train", "val"):
        raise DataError(f"split: 'train' or 'val', got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"data.val_fraction: must be in [0, 1), got {val_fraction}")
    n_val = int(np.ceil(val_fraction * len(paths))) if len(paths) >= 2 else 0
    if n_val == 0:
        return paths
    return paths[:-n_val] if split == "train" else paths[-n_val:]


class SceneDataset(Dataset):
    """Samples of scenes: two overlapping augmented views (``views == 2``) or one crop (``views == 0``).

    Items are fetched with ``(index, seed)`` keys (or a plain index, whose seed is the index): sample ``i`` is
    scene ``i % n_scenes`` and every random choice comes from the seed. A two-view sample is
    ``{"view_a", "view_b": point dicts, "scene_points": M, "scene": path}``; a one-crop sample is a point dict
    (with ``segment`` when the scene has labels) of at most ``augment.max_points`` points around a random point,
    without augmentation. Scenes are grid-sampled and given normals on first use and kept in a per-process cache of
    ``cache_scenes`` scenes.
    """

    def __init__(self, paths: Sequence[Path], grid_size: float, views: int = 0, augment: ViewAugment | None = None,
                 repeat: int = 1, normal_radius: float | None = None, cache_scenes: int = 8) -> None:
        if views not in (0, 2):
            raise DataError(f"objective: scene samples come as 0 or 2 views, not {views}")
        if grid_size <= 0:
            raise DataError(f"data.grid_size: must be > 0, got {grid_size}")
        if repeat < 1:
            raise DataError(f"data.repeat: must be >= 1, got {repeat}")
        self.paths = list(paths)
        self.grid_size, self.views, self.repeat = float(grid_size), views, int(repeat)
        self.augment = augment or ViewAugment()
        self.normal_radius = normal_radius
        self.cache_scenes = int(cache_scenes)
        self._cache: OrderedDict[Path, PreparedScene] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths) * self.repeat

    def prepared(self, i: int) -> PreparedScene:
        path = self.paths[i % len(self.paths)]
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        scene = prepare_scene(read_scene(path), self.grid_size, self.normal_radius)
        self._cache[path] = scene
        while len(self._cache) > self.cache_scenes:
            self._cache.popitem(last=False)
        return scene

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), int(key))
        scene = self.prepared(index)
        rng = np.random.default_rng([seed, 0x5C3E])
        path = str(self.paths[index % len(self.paths)])
        if self.views:
            a, b = two_views(scene, self.augment, rng)
            return {"view_a": a, "view_b": b, "scene_points": len(scene.coord), "scene": path}
        centre = scene.coord[rng.integers(len(scene.coord))]
        idx = self.augment.crop_indices(scene.coord, centre, self.augment.max_points) \
            if len(scene.coord) > self.augment.max_points else np.arange(len(scene.coord))
        return point_dict(scene.coord[idx], None if scene.color is None else scene.color[idx], scene.normal[idx],
                          self.grid_size, None if scene.segment is None else scene.segment[idx], index=idx)
