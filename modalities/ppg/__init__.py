"""PPG: the wearable foundation-model recipe (Abbaspourazad et al., ICLR 2024), the HeartPy embedded default and
probes on real recordings.

Records are WFDB (a ``PLETH`` channel, e.g. PhysioNet/CinC Challenge 2015) or CSV (HeartPy's layouts: a
``timer``/``datetime`` column, or one headerless column at ``data.csv_fs``), read window by window through the
shared readers (:func:`~modalities.signals.index.index_records`); a record's PPG channel (:func:`~modalities.ppg.probes.ppg_channel`)
fills the single canonical channel ``PPG``, resampled to the recipe's rate, band-passed, z-scored and clipped.
Positive pairs are two random segments of the same record (``view_source: record``), each augmented with the
paper's cascade (:class:`~modalities.signals.augment.BiosignalAugment`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.ppg.heartpy_data import HEARTPY_FILES, heartpy_data_dir
from modalities.ppg.options import PpgOptions
from modalities.ppg.probes import ppg_channel, ppg_records, probe_targets
from modalities.signals.windows import SignalWindows

# Canonical channels a PPG dataset can carry: the PPG itself and, for the cross-modal objective on records that
# hold both (Challenge 2015: II, V, PLETH), the record's first ECG lead.
KNOWN_CHANNELS = ("PPG", "ECG")


@dataclass(frozen=True)
class PPGChannelAlias:
    """Maps the PPG channel names of the indexed records to ``PPG`` and ECG lead names to ``ECG`` (picklable for
    DataLoader workers)."""

    names: frozenset[str]

    def __call__(self, name: str) -> str | None:
        if name in self.names:
            return "PPG"
        from modalities.ecg.leads import lead_alias

        return "ECG" if lead_alias(name) is not None else None


def _augment(opts: PpgOptions):
    from modalities.signals.augment import BiosignalAugment

    try:
        return BiosignalAugment(**opts.augment)
    except TypeError as exc:
        raise DataError(f"data.augment: {exc}") from None
    except ValueError as exc:  # BiosignalAugment names the option already
        raise DataError(f"data.{exc}") from None


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> SignalWindows:
    opts = PpgOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no PPG data given")
    channels = tuple(opts.channels)
    if not channels or channels[0] != "PPG" or len(set(channels)) != len(channels) or not set(channels) <= set(
            KNOWN_CHANNELS):
        raise DataError(f"data.channels: must be [PPG] or [PPG, ECG] (ECG for the cross_modal objective), "
                        f"got {list(channels)}")
    records = ppg_records(opts.path, csv_fs=opts.csv_fs or None)
    names = frozenset(c for c in (ppg_channel(r) for r in records) if c is not None)
    if not names:
        raise DataError(f"{opts.path}: no record has a PPG channel (PLETH / PPG / BVP, or a one-column CSV file)")
    return SignalWindows(
        records, channels=channels, fs=opts.fs, window_s=opts.window_s, split=split, val_fraction=opts.val_fraction,
        channel_aliases=PPGChannelAlias(names), band=opts.band, clip=opts.clip, random_crop=(split == "train"),
        views=views, view_transform=_augment(opts) if views else None, view_source=opts.view_source,
    )


def default_data(cache_dir: Path) -> Path:
    """The embedded default: the three PPG recordings shipped inside the installed ``heartpy`` package
    (``heartpy/data/data{,2,3}.csv``: 25 s, 128 s and 682 s; see data_cards/heartpy_ppg.md), copied once into
    ``cache_dir/heartpy``, so that a run's ``data.path`` outlives a reinstall of the package (indexes go to the cache
    directory in any case, never beside the data). ``data.csv`` states no rate: the recipe's ``demo`` section sets
    ``data.csv_fs: 100``."""
    source = heartpy_data_dir()
    out = Path(cache_dir) / "heartpy"
    out.mkdir(parents=True, exist_ok=True)
    for name in HEARTPY_FILES:
        if not (out / name).is_file():
            tmp = out / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(source / name, tmp)
            os.replace(tmp, out / name)  # atomic: a concurrent run never indexes half a file
    return out


MODALITY = Modality(
    name="ppg",
    description="PPG (WFDB PLETH / CSV); wearable InfoNCE (momentum teacher, KoLeo) on a 1-D EfficientNet",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="signal",
    view_augmentations=True,
    options=PpgOptions,
)
