"""3D scenes: indoor and outdoor scene formats, Masked Scene Modeling on a hierarchical sparse UNet, a simulated
furnished-room default and segmentation probes with MSM's multi-resolution protocol.

Scenes are ScanNet-style PLY files, Pointcept folders, S3DIS rooms, SensatUrban crops or SemanticKITTI frames
(:mod:`modalities.scenes.readers`), grid-sampled (``data.grid_size``: 2 cm indoors; 0.1 m for SensatUrban and
0.2 m for SemanticKITTI in the probes, since their points are 3 cm to metres apart), given open3d normals where
the file has none, and turned into Pointcept point dictionaries (:mod:`modalities.scenes.points`) with features
colour (or a constant where there is none) and normal. Pretraining samples are two overlapping augmented crops of
one scene (:class:`~modalities.scenes.points.ViewAugment`); the MSM objective masks patches of voxels
(:func:`~modalities.scenes.points.patch_mask`, 40 % by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.scenes.dataset import SceneDataset, split_scenes
from modalities.scenes.options import ScenesOptions
from modalities.scenes.points import ViewAugment, collate_points
from modalities.scenes.probes import check_probe_options, probe_targets
from modalities.scenes.readers import index_scenes
from modalities.scenes.simulate import simulate_corpus


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> SceneDataset:
    opts = check_probe_options(data_cfg)  # a renamed probe option fails before training, not after it
    if not opts.path:
        raise DataError("data.path: no scenes given")
    paths = split_scenes(index_scenes(opts.path), split, opts.val_fraction)
    return SceneDataset(paths, opts.grid_size, views=views, augment=ViewAugment.from_config(opts.augment),
                        repeat=opts.repeat if split == "train" else 1, normal_radius=opts.normal_radius or None)


def default_data(cache_dir: Path) -> Path:
    """The embedded default: simulated furnished rooms as Pointcept folders (see data_cards/room_simulator.md)."""
    return simulate_corpus(Path(cache_dir) / "rooms", n_rooms=16, density=800.0)


MODALITY = Modality(
    name="scenes",
    description="3D scenes (ScanNet PLY, Pointcept, S3DIS, SensatUrban, SemanticKITTI); Masked Scene Modeling",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="points",
    view_augmentations=True,
    collate=collate_points,
    options=ScenesOptions,
)

__all__ = ["MODALITY", "build_dataset", "default_data"]
