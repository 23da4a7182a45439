"""The ``data`` options the signal modalities (ECG, EEG, PPG) share: :class:`SignalOptions`.

Each signal modality derives its own options from it (:class:`~modalities.ecg.options.EcgOptions`,
:class:`~modalities.eeg.options.EegOptions`, :class:`~modalities.ppg.options.PpgOptions`), states its own rate,
window, band-pass and probe window (keyword-only fields without a default here, so a modality cannot forget them)
and redeclares a field where its default differs. The shared code (:mod:`modalities.signals.labelled`) reads these
fields from the modality's instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modalities.options import DataOptions

__all__ = ["SignalOptions"]


@dataclass(frozen=True)
class SignalOptions(DataOptions):
    """Preprocessing, probe and labelled-window options of every signal modality."""

    # preprocessing of every window (pretraining, probes, fine-tuning alike)
    fs: float = field(kw_only=True)  # every record is resampled to this rate (Hz)
    window_s: float = field(kw_only=True)  # window length (s) of pretraining samples and labelled windows
    band: tuple[float, float] | None = field(kw_only=True)  # zero-phase Butterworth band-pass (Hz); null to skip
    clip: float | None = 5.0  # clip at +-clip after per-channel z-scoring; null: no clipping
    val_fraction: float = 0.1  # the last 10 % of every record is held out (RankMe batch, never trained on)
    # view-based objectives: "window" augments one window twice; "record" pairs two segments of the same record
    # (the wearable foundation-model positives)
    view_source: Literal["window", "record"] = "window"
    # the report's built-in probes
    probe_window_s: float = field(kw_only=True)  # probe window length (s)
    probe_stride_s: float | None = None  # stride (s) of the probe windows; null: half of probe_window_s
    probe_identity_folds: int | None = 3  # record-identity probe: blocked folds per record (null or 0: 2/3 vs 1/3)
    # fine-tuning on labelled windows (``data.labels``, modalities/signals/labelled.py)
    event_stride_s: float | None = None  # labels events: windows at this stride inside each event (null: one at onset)
    label_column: str | None = None  # label table: the column holding the labels (e.g. PTB-XL scp_codes)
    statements: str | None = None  # label table: a table mapping codes to superclasses (PTB-XL scp_statements.csv)
    max_windows_per_record: int = 10  # label table: at most this many windows of each record
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test shares of the labelled items

    def probe_stride(self) -> float:
        """The stride (s) of the probe windows: ``probe_stride_s``, else half of ``probe_window_s``."""
        return float(self.probe_stride_s) if self.probe_stride_s is not None else self.probe_window_s / 2
