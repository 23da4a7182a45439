"""EEG: any montage, the EEGFormer-style recipe, a simulated motor-imagery default corpus and probes on real runs.

Recordings are EDF / EDF+ / BDF / FIF / EEGLAB files read lazily through MNE (:mod:`modalities.eeg.recordings`):
EEG channels are picked, average re-referenced, notched at 50/60 Hz, band-passed, resampled to the recipe's rate
and z-scored per channel. A sample carries ``n_channels`` of the recording's channels
(:class:`~modalities.eeg.windows.EEGWindows`), which a channel-independent encoder (``eegformer_*``) encodes one
by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.eeg.options import EegOptions
from modalities.eeg.probes import probe_targets
from modalities.eeg.recordings import index_eeg
from modalities.eeg.simulate import simulate_corpus
from modalities.eeg.windows import EEGWindows


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> EEGWindows:
    opts = EegOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no EEG data given")
    if views:
        raise DataError("objective: EEG samples have no augmented views; use vq_reconstruction or jepa")
    if opts.labels:  # fine-tuning: labelled windows (annotated events or a per-record table)
        return _labelled(opts, split)
    return EEGWindows(
        index_eeg(opts.path), fs=opts.fs, window_s=opts.window_s, n_channels=opts.n_channels, split=split,
        val_fraction=opts.val_fraction, band=opts.band, notch_hz=tuple(opts.notch_hz or ()),
        reref_min_channels=opts.reref_min_channels, clip=opts.clip, random_crop=(split == "train"),
    )


def _labelled(opts: EegOptions, split: str) -> Any:
    """Labelled windows on ``data.channels`` (default: every EEG channel of each recording)."""
    from modalities.eeg.recordings import eeg_record, read_eeg_window
    from modalities.signals.labelled import labelled_windows

    window_s, channels = opts.label_window_s or opts.window_s, opts.channels
    recordings = {r.info.path: r for r in index_eeg(opts.path)}

    def read(info: Any, start_s: float) -> Any:
        rec = recordings.get(info.path) or eeg_record(info)
        rows = None
        if channels:
            missing = [c for c in channels if c not in rec.names]
            if missing:
                raise DataError(f"{info.path}: no channel {missing[0]!r} for data.channels")
            rows = [rec.names.index(c) for c in channels]
        return read_eeg_window(rec, start_s, window_s, opts.fs, band=opts.band, notch_hz=tuple(opts.notch_hz or ()),
                               reref_min_channels=opts.reref_min_channels, clip=opts.clip, rows=rows)

    return labelled_windows(opts, [r.info for r in recordings.values()], read, split, window_s)


def default_data(cache_dir: Path) -> Path:
    """The embedded default: seeded simulated motor-imagery EEG runs as EDF+ (see data_cards/eeg_simulator.md)."""
    return simulate_corpus(Path(cache_dir) / "eegsim")


MODALITY = Modality(
    name="eeg",
    description="EEG (EDF/BDF/FIF/EEGLAB, any montage); EEGFormer-style VQ spectral reconstruction",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="signal",
    view_augmentations=False,
    options=EegOptions,
)
