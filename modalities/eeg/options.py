"""The EEG ``data`` options: every option the EEG code reads, its type, its one default and what it means.

The recipe (``modalities/eeg/recipe.yaml``) sets only what differs from these defaults (its ``demo`` and ``finetune``
sections); ``--set data.NAME=VALUE`` changes one for a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modalities.signals.options import SignalOptions

__all__ = ["EegOptions"]


@dataclass(frozen=True)
class EegOptions(SignalOptions):
    """EEGFormer-style inputs: average re-referenced, notched at 50/60 Hz, band-passed 0.5-45 Hz, resampled to 128 Hz,
    z-scored per channel and clipped at +-10; 4 s windows of 4 of the recording's channels.

    ``path`` (--data): a folder of EDF/BDF/FIF/EEGLAB files (searched recursively) or one file. ``probe_data``
    (--probe-data): a folder of real labelled recordings for the report's probes (an annotated motor-imagery run
    eeg/test_edf_overlapping_annotations.edf, other EEG files under eeg/, sleep/*Hz.txt); null: rest vs left vs right
    imagery on simulated runs (seed 1001, not the training default's), 2 s from 0.8 s after each cue, blocked over
    6 blocks of every run. Fine-tuning (``data.labels: events``): one window of ``label_window_s`` from the onset of
    each annotated event, or with ``event_stride_s`` windows at that stride inside each event, on ``channels``.
    """

    fs: float = 128.0  # every recording is resampled to this rate (Hz)
    window_s: float = 4.0  # pretraining windows (s): 16 tokens of 0.25 s per channel
    n_channels: int = 4  # channels per sample, drawn from the recording's own EEG channels
    band: tuple[float, float] | None = (0.5, 45.0)  # zero-phase Butterworth band-pass (Hz); null to skip
    notch_hz: tuple[float, ...] | None = (50.0, 60.0)  # mains notches (those below Nyquist); null or []: none
    reref_min_channels: int = 8  # average re-reference when a recording has at least this many EEG channels
    clip: float | None = 10.0  # clip at +-clip after per-channel z-scoring; null: no clipping
    # real motor-imagery probe: the first 1.25 s of each annotated event (5 tokens) ...
    probe_window_s: float = 1.25
    probe_folds: int | None = 6  # ... scored by blocked cross-validation over 6 blocks of the run (null: 2/3 vs 1/3)
    # ... read from the per-channel features concatenated (mean: the channel-mean embedding)
    probe_embedding: Literal["channels", "mean"] = "channels"
    # fine-tuning (data.labels)
    label_window_s: float | None = None  # labelled windows (s); null: window_s
    channels: list[str] | None = None  # labelled windows: these channels, in order; null: every EEG channel
