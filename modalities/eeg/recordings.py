"""EEG recordings on the shared signal readers: EEG channel picking, lazy window reads in uV and the EEG
preprocessing chain.

Files are indexed and read by :mod:`modalities.signals` (EDF / EDF+ / BDF through pyedflib, FIF / EEGLAB through
MNE, CSV / text columns), which keeps each channel's unit and type; this module keeps the EEG channels, names them
in 10-20 / 10-10 spelling (:func:`~modalities.signals.channels.normalize_channel_name`) and converts them to uV.

A window is read with a margin on both sides (inside the recording), so filters have no edge transient in it,
then: average re-reference over the recording's EEG channels (when it has at least ``reref_min_channels``; a
two-channel montage such as ``F4-A1, Cz-A2`` is already referenced and is left alone), notch at the mains
frequencies below Nyquist, zero-phase band-pass, polyphase resampling to the recipe's rate, and a per-channel
z-score with clipping. Only the window plus its margin is read, so a corpus is never loaded whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from modalities.base import DataError
from modalities.signals.annotations import Span, read_annotations
from modalities.signals.channels import normalize_channel_name, rereference, unit_scale
from modalities.signals.filters import bandpass, normalize, notch, resample
from modalities.signals.index import index_records
from modalities.signals.record import RecordInfo
from modalities.signals.resampled import read_window_resampled

__all__ = [
    "EEGRecord",
    "eeg_record",
    "index_eeg",
    "preprocess",
    "read_eeg_window",
    "read_events",
]

_MARGIN_S = 1.0  # read beyond the window on each side: the band-pass and notch settle within it


@dataclass(frozen=True)
class EEGRecord:
    """The EEG channels of one indexed recording.

    Args:
        info: the recording as the shared readers index it.
        channels: the file's labels of the EEG channels kept, in file order.
        names: the same channels in 10-20 / 10-10 spelling.
        scales: factor from each channel's unit to uV (1 for a unitless column, taken as uV).
    """

    info: RecordInfo
    channels: tuple[str, ...]
    names: tuple[str, ...]
    scales: tuple[float, ...]

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def fs(self) -> float:
        return self.info.fs

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    @property
    def name(self) -> str:
        return self.info.name


def _to_uv(unit: str, where: str, channel: str) -> float:
    if not unit.strip():
        return 1.0
    try:
        return unit_scale(unit, "uV")
    except ValueError:
        raise DataError(f"{where}: channel {channel!r} is in {unit!r}, not a volt unit") from None


def eeg_record(info: RecordInfo, channels: Sequence[str] | None = None) -> EEGRecord | None:
    """The EEG view of a recording: ``channels`` (file labels), default every channel typed ``eeg``; ``None`` when
    it has none."""
    types = info.channel_types or ("",) * len(info.channels)
    keep = list(channels) if channels is not None else [c for c, t in zip(info.channels, types) if t == "eeg"]
    if not keep:
        return None
    units = dict(zip(info.channels, info.units))
    return EEGRecord(info, tuple(keep), tuple(normalize_channel_name(c) for c in keep),
                     tuple(_to_uv(units.get(c, ""), info.path, c) for c in keep))


def index_eeg(root: str | Path, fs: float | None = None) -> list[EEGRecord]:
    """The recordings with EEG channels under a folder (recursively) or in one file
    (:func:`~modalities.signals.index.index_records`; ``fs`` for a text column without a rate), sorted by path.

    Raises:
        DataError: the path does not exist, a file cannot be read, or no recording has an EEG channel.
    """
    infos = index_records(root, fs=fs)
    records = [r for r in (eeg_record(info) for info in infos) if r is not None]
    if not records:
        raise DataError(f"{Path(root).expanduser().absolute()}: no recording with EEG channels "
                        f"({len(infos)} recording(s) without)")
    return records


def read_events(record: EEGRecord | RecordInfo | str | Path) -> list[Span]:
    """The recording's annotated spans (EDF+ / FIF annotations), sorted by onset."""
    target = record.info if isinstance(record, EEGRecord) else record
    return sorted(read_annotations(target), key=lambda span: span.onset_s)


def preprocess(x_uv: np.ndarray, fs_in: float, fs_out: float, band: tuple[float, float] | None = (0.5, 45.0),
               notch_hz: Sequence[float] = (50.0, 60.0), reref: bool = True,
               rows: Sequence[int] | None = None) -> np.ndarray:
    """Re-reference (average over all channels), keep ``rows`` (default all), notch every mains frequency of
    ``notch_hz`` and its harmonics below Nyquist, band-pass and resample float[C, n] (uV) ->
    float64[len(rows), n']. The filters act per channel, so selecting rows first saves work."""
    x = np.asarray(x_uv, dtype=np.float64)
    if reref:
        x, _ = rereference(x, [str(i) for i in range(x.shape[0])], "average")
    if rows is not None:
        x = x[np.asarray(rows, dtype=np.int64)]
    for freq in notch_hz or ():
        x = notch(x, fs_in, float(freq))
    if band is not None:
        x = bandpass(x, fs_in, band[0], band[1])
    return resample(x, fs_in, fs_out)


def read_eeg_window(record: EEGRecord, start_s: float, duration_s: float, fs: float,
                    band: tuple[float, float] | None = (0.5, 45.0), notch_hz: Sequence[float] = (50.0, 60.0),
                    reref_min_channels: int = 8, clip: float | None = 10.0,
                    rows: Sequence[int] | None = None) -> np.ndarray:
    """EEG channels ``rows`` (default all, in file order) of ``[start_s, start_s + duration_s)``, preprocessed
    (:func:`preprocess`; the average reference uses every EEG channel) and z-scored per channel,
    float32[len(rows), round(duration_s * fs)].

    Raises:
        DataError: the window is not inside the recording.
    """
    n_out = int(round(duration_s * fs))
    half = 0.5 / record.fs
    if duration_s <= 0 or start_s < -half or start_s + duration_s > record.duration_s + half:
        raise DataError(f"{record.path}: window {start_s:g} s + {duration_s:g} s is outside the recording's "
                        f"{record.duration_s:g} s or empty")
    first = max(0.0, math.floor((start_s - _MARGIN_S) * record.fs) / record.fs)
    last = min(record.duration_s, start_s + duration_s + _MARGIN_S)
    raw = read_window_resampled(record.info, first, last - first, list(record.channels), record.fs)
    raw = raw.astype(np.float64) * np.asarray(record.scales)[:, None]
    y = preprocess(raw, record.fs, fs, band, notch_hz, reref=len(record.channels) >= reref_min_channels, rows=rows)
    k0 = int(round((start_s - first) * fs))
    y = y[:, k0:k0 + n_out]
    if y.shape[1] < n_out:  # rounding at the very end of a recording
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])), mode="edge")
    return normalize(y, clip=clip).astype(np.float32)
