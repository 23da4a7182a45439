"""ECG: 12-lead conventions, the ECG-JEPA recipe, the ECGSYN embedded default and probes on real records.

Records are WFDB (``.hea`` + ``.dat``/``.mat``, single- or multi-segment, multi-frequency) read lazily window by
window; each record's leads are mapped to the 12 standard leads (missing leads are zero), resampled to the
recipe's rate, band-passed, z-scored per lead and clipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.ecg.options import EcgOptions
from modalities.ecg.probes import probe_targets
from modalities.ecg.simulate import simulate_corpus
from modalities.signals.index import index_records
from modalities.signals.windows import SignalWindows


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> SignalWindows:
    opts = EcgOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no ECG data given")
    leads = list(opts.leads)
    unknown = [l for l in leads if l not in LEADS_12]
    if unknown or not leads:
        what = f"unknown lead {unknown[0]!r}" if unknown else "no lead given"
        raise DataError(f"data.leads: {what}; leads: {', '.join(LEADS_12)}")
    if opts.labels:  # fine-tuning: labelled windows (annotations or a per-record table)
        from modalities.ecg.probes import lead_mapping, preprocess_window
        from modalities.signals.labelled import labelled_windows

        def read(info: Any, start_s: float) -> Any:
            return preprocess_window(info, start_s, opts.window_s, lead_mapping(info, leads), opts.fs, len(leads),
                                     opts.band, opts.clip)

        return labelled_windows(opts, index_records(opts.path), read, split, opts.window_s)
    view_transform = None
    if views:
        from modalities.signals.augment import BiosignalAugment

        view_transform = BiosignalAugment(p_channel_permute=0.0)  # lead order carries anatomy in ECG
    return SignalWindows(
        index_records(opts.path), channels=leads, fs=opts.fs, window_s=opts.window_s, split=split,
        val_fraction=opts.val_fraction, channel_aliases=lead_alias, band=opts.band, clip=opts.clip,
        random_crop=(split == "train"), views=views, view_transform=view_transform, view_source=opts.view_source,
    )


def default_data(cache_dir: Path) -> Path:
    """The embedded default: a seeded 12-lead ECGSYN corpus simulated into the cache (see data_cards/ecgsyn.md)."""
    return simulate_corpus(Path(cache_dir) / "ecgsyn")


MODALITY = Modality(
    name="ecg",
    description="12-lead ECG (WFDB records); ECG-JEPA on a 1-D ViT",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="signal",
    view_augmentations=True,
    options=EcgOptions,
)
