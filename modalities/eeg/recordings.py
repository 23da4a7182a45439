"""EEG recordings (EDF / EDF+ / BDF / FIF / EEGLAB through MNE): an index, EEG channel picking, lazy window reads
and the EEG preprocessing chain.

A window is read with a margin on both sides (inside the recording), so filters have no edge transient in it,
then: average re-reference over the recording's EEG channels (when it has at least ``reref_min_channels``; a
two-channel montage such as ``F4-A1, Cz-A2`` is already referenced and is left alone), notch at the mains
frequencies below Nyquist, zero-phase band-pass, polyphase resampling to the recipe's rate, and a per-channel
z-score with clipping. Values are in uV before the z-score.

MNE opens a file lazily (``preload=False``) and reads only the requested samples, so a corpus is never loaded
whole; an opened header is cached per process.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import signal

from modalities.base import DataError
from modalities.signals.filters import bandpass, normalize, resample

__all__ = [
    "EEG_SUFFIXES",
    "EEGRecord",
    "Event",
    "clean_channel_name",
    "index_eeg",
    "notch",
    "preprocess",
    "read_eeg_window",
    "read_events",
]

EEG_SUFFIXES = (".edf", ".bdf", ".fif", ".set")
_NOT_EEG = re.compile(r"(eog|emg|ecg|ekg|resp|status|trigger|stim|event|annotation|sao2|spo2|pleth|temp|chin|"
                      r"\bleg\b|\bloc\b|\broc\b|\bmisc\b)", re.I)
_MARGIN_S = 1.0  # read beyond the window on each side: the band-pass and notch settle within it


@dataclass(frozen=True)
class EEGRecord:
    """What the header of one EEG file says.

    Args:
        path: absolute file path.
        fs: sampling rate in Hz.
        n_samples: samples per channel.
        channels: the file's labels of the EEG channels kept, in file order.
        names: the same channels in 10-20 / 10-10 spelling (:func:`clean_channel_name`).
    """

    path: str
    fs: float
    n_samples: int
    channels: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def name(self) -> str:
        return Path(self.path).stem


@dataclass(frozen=True)
class Event:
    """An annotated span of a recording (EDF+ annotation, FIF annotation)."""

    onset_s: float
    duration_s: float
    label: str


def clean_channel_name(label: str) -> str:
    """10-20 / 10-10 spelling of a file's EEG label: BCI2000 dots and an ``EEG`` prefix dropped, case as in the
    standard montages (``"Fc5."`` -> ``"FC5"``, ``"EEG Cz"`` -> ``"Cz"``, ``"CZ-A2"`` -> ``"Cz-A2"``)."""
    name = label.strip().rstrip(".").strip()
    name = re.sub(r"^EEG[\s_:-]+", "", name, flags=re.I)
    parts = []
    for part in name.split("-"):
        p = part.strip().upper()
        if p.startswith("FP"):
            p = "Fp" + p[2:]
        if len(p) > 1 and p.endswith("Z"):
            p = p[:-1] + "z"
        parts.append(p)
    return "-".join(parts)


@lru_cache(maxsize=64)
def _open(path: str) -> Any:
    import mne

    try:
        return mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE's errors rarely name the file
        raise DataError(f"{path}: cannot read EEG file ({' '.join(str(exc).split())[:160]})") from None


def _record(path: Path) -> EEGRecord:
    raw = _open(str(path))
    types = raw.get_channel_types()
    keep = [ch for ch, t in zip(raw.ch_names, types) if t == "eeg" and not _NOT_EEG.search(ch)]
    if not keep:
        raise DataError(f"{path}: no EEG channels (channels: {', '.join(raw.ch_names[:8])})")
    return EEGRecord(str(path), float(raw.info["sfreq"]), int(raw.n_times), tuple(keep),
                     tuple(clean_channel_name(c) for c in keep))


def index_eeg(root: str | Path) -> list[EEGRecord]:
    """Every EEG file (:data:`EEG_SUFFIXES`) under a folder (recursively, hidden folders skipped), or one file;
    sorted by path.

    Raises:
        DataError: the path does not exist, holds no EEG file, or a file cannot be read.
    """
    root = Path(root).expanduser().absolute()
    if root.is_file():
        if root.suffix.lower() not in EEG_SUFFIXES:
            raise DataError(f"{root}: not an EEG file ({', '.join(EEG_SUFFIXES)})")
        return [_record(root)]
    if not root.is_dir():
        raise DataError(f"{root}: no such folder or EEG file")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EEG_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"{root}: no EEG files ({', '.join(EEG_SUFFIXES)}) found")
    return [_record(p) for p in files]


def read_events(record: EEGRecord | str | Path) -> list[Event]:
    """The recording's annotations, sorted by onset."""
    path = record.path if isinstance(record, EEGRecord) else str(Path(record).absolute())
    ann = _open(path).annotations
    return sorted((Event(float(o), float(d), str(l)) for o, d, l in zip(ann.onset, ann.duration, ann.description)),
                  key=lambda e: e.onset_s)


def notch(x: np.ndarray, fs: float, freqs: Sequence[float] = (50.0, 60.0), q: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch (``scipy.signal.iirnotch``, quality ``q``) at every frequency below Nyquist."""
    y = np.asarray(x, dtype=np.float64)
    for f0 in freqs:
        if 0 < f0 < fs / 2:
            b, a = signal.iirnotch(f0, q, fs=fs)
            y = signal.filtfilt(b, a, y, axis=-1, padlen=min(3 * max(len(a), len(b)), y.shape[-1] - 1))
    return y


def preprocess(x_uv: np.ndarray, fs_in: float, fs_out: float, band: tuple[float, float] | None = (0.5, 45.0),
               notch_hz: Sequence[float] = (50.0, 60.0), reref: bool = True,
               rows: Sequence[int] | None = None) -> np.ndarray:
    """Re-reference (average over all channels), keep ``rows`` (default all), notch, band-pass and resample
    float[C, n] (uV) -> float64[len(rows), n']. The filters act per channel, so selecting rows first saves work."""
    x = np.asarray(x_uv, dtype=np.float64)
    if reref:
        x = x - x.mean(axis=0, keepdims=True)
    if rows is not None:
        x = x[np.asarray(rows, dtype=np.int64)]
    if notch_hz:
        x = notch(x, fs_in, notch_hz)
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
    if duration_s <= 0 or start_s < -0.5 / record.fs or start_s + duration_s > record.duration_s + 0.5 / record.fs:
        raise DataError(f"{record.path}: window {start_s:g} s + {duration_s:g} s is outside the recording's "
                        f"{record.duration_s:g} s or empty")
    margin = int(math.ceil(_MARGIN_S * record.fs))
    s0 = int(math.floor(start_s * record.fs + 1e-9))
    s1 = int(math.ceil((start_s + duration_s) * record.fs - 1e-9))
    first, last = max(0, s0 - margin), min(record.n_samples, s1 + margin)
    try:
        raw = _open(record.path).get_data(picks=list(record.channels), start=first, stop=last) * 1e6
    except Exception as exc:
        raise DataError(f"{record.path}: cannot read samples [{first}, {last}) ({' '.join(str(exc).split())[:160]})") from None
    y = preprocess(raw, record.fs, fs, band, notch_hz, reref=len(record.channels) >= reref_min_channels, rows=rows)
    k0 = int(round((start_s * record.fs - first) * fs / record.fs))
    y = y[:, k0:k0 + n_out]
    if y.shape[1] < n_out:  # rounding at the very end of a recording
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])), mode="edge")
    return normalize(y, clip=clip).astype(np.float32)
