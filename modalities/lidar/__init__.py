"""LiDAR: KITTI / SemanticKITTI / nuScenes / PCD / PLY / LAS sweeps, frame pairs from poses, a ray-cast simulator.

Readers (:mod:`modalities.lidar.readers`) return the values in the files; sequences with poses give pairs of
consecutive sweeps in the current sweep's frame (:mod:`modalities.lidar.sweeps`); points are cropped to a range
preset and voxelised (:mod:`modalities.lidar.voxels`). The default encoder is a sparse-voxel UNet on spconv and
the default objective E-SSL3D (rotation classification, point contrast, temporal flow equivariance). Without
``--data`` a ray-cast street simulator builds the corpus (:mod:`modalities.lidar.simulate`); the report's per-point
probe uses other simulated streets unless ``--probe-data`` names labelled frames (:mod:`modalities.lidar.probes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.lidar.options import LidarOptions
from modalities.lidar.probes import check_probe_options, probe_targets
from modalities.lidar.simulate import simulate_corpus
from modalities.lidar.sweeps import LidarPairs, collate_pairs, collate_points, dataset_from_config


def collate(samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Sweep pairs for pretraining; labelled sweeps (``data.labels: points``) for fine-tuning."""
    return collate_pairs(samples) if "prev_coord" in samples[0] else collate_points(samples)


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> LidarPairs:
    if views:
        raise DataError("objective: LiDAR samples are sweep pairs without augmented views; use e_ssl3d")
    check_probe_options(data_cfg)  # a renamed probe option fails before training, not after it
    return dataset_from_config(data_cfg, split)


def default_data(cache_dir: Path) -> Path:
    """The embedded default: ray-cast street sequences (see data_cards/lidar_simulator.md)."""
    return simulate_corpus(Path(cache_dir) / "streets")


MODALITY = Modality(
    name="lidar",
    description="LiDAR sweeps (KITTI/SemanticKITTI .bin, nuScenes .pcd.bin, PCD/PLY, LAS/LAZ); E-SSL3D on spconv",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="points",
    view_augmentations=False,
    collate=collate,
    options=LidarOptions,
)
