"""Fixed-length multi-channel EEG windows for channel-independent encoders.

Recordings differ in montage (64 BCI2000 channels, two mastoid-referenced channels, 23 simulated ones), so a
sample holds ``n_channels`` channels *drawn from the recording's own EEG channels* rather than a fixed montage:
a channel-independent encoder treats every channel alike, and a fixed count lets samples stack into batches.
Training items draw the channels (without replacement, or with it when the recording has fewer) and the window
position from the item's seed; deterministic items (``ds[i]``, validation) take ``n_channels`` channels evenly
spread over the file order and the ``i``-th fixed window.

Each recording is split in time: its first ``1 - val_fraction`` trains and the rest validates.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError
from modalities.eeg.recordings import EEGRecord, read_eeg_window
from modalities.signals.windows import check_short_parts, split_summary

__all__ = ["EEGWindows"]


class EEGWindows(Dataset):
    """Windows of ``window_s`` seconds at ``fs`` Hz with ``n_channels`` EEG channels each.

    Args:
        records: indexed recordings (:func:`~modalities.eeg.recordings.index_eeg`).
        fs, window_s: output rate (Hz) and window length (s); ``T = round(window_s * fs)``.
        n_channels: channels per sample.
        split: ``"train"`` or ``"val"``; val_fraction: the held-out end of every recording.
        band, notch_hz, reref_min_channels, clip: preprocessing (:func:`~modalities.eeg.recordings.read_eeg_window`).
        random_crop: seeded items place the window uniformly at random inside the part.

    Items are ``{"signal": float32[n_channels, T], "fs", "channels": "C3,Cz,...", "subject", "record",
    "start_s"}``. Recordings shorter than one window are named as in
    :class:`~modalities.signals.windows.SignalWindows` (one warning; a DataError when no window is left).
    """

    def __init__(self, records: Sequence[EEGRecord], *, fs: float, window_s: float, n_channels: int = 4,
                 split: str = "train", val_fraction: float = 0.1, band: tuple[float, float] | None = (0.5, 45.0),
                 notch_hz: Sequence[float] = (50.0, 60.0), reref_min_channels: int = 8, clip: float | None = 10.0,
                 random_crop: bool = True) -> None:
        records = list(records)
        where = records[0].path if len(records) == 1 else "data.path"
        if split not in ("train", "val"):
            raise DataError(f"{where}: split must be 'train' or 'val', got {split!r}")
        if not 0.0 <= val_fraction < 1.0 or (split == "val" and val_fraction == 0.0):
            raise DataError(f"data.val_fraction: must be in [0, 1) (and > 0 for a val split), got {val_fraction}")
        if not (fs > 0 and window_s > 0):
            raise DataError(f"data.fs / data.window_s: must be positive, got {fs} and {window_s}")
        if n_channels < 1:
            raise DataError(f"data.n_channels: must be >= 1, got {n_channels}")
        if not records:
            raise DataError("data.path: no EEG recordings given")
        self.fs, self.window_s, self.n_channels = float(fs), float(window_s), int(n_channels)
        self.n_samples = int(round(window_s * fs))
        self.band = tuple(band) if band is not None else None
        self.notch_hz = tuple(notch_hz or ())
        self.reref_min_channels, self.clip, self.random_crop = int(reref_min_channels), clip, random_crop
        self.split = split
        self._parts: list[tuple[EEGRecord, float, float]] = []
        counts = []
        short: list[tuple[str, float]] = []
        for rec in records:
            n_train = (1.0 - val_fraction) * rec.duration_s
            first, stop = (0.0, n_train) if split == "train" else (n_train, rec.duration_s)
            n = int((stop - first + 1e-9) // self.window_s)
            if n >= 1:
                self._parts.append((rec, first, stop))
                counts.append(n)
            else:
                short.append((rec.path, stop - first))
        self.short_records = tuple(path for path, _ in short)
        corpus = os.path.commonpath([r.path for r in records]) if len(records) > 1 else where
        check_short_parts(corpus, split, self.window_s, val_fraction, short, n_used=len(self._parts))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        """The number of windows of the split: one epoch's items (the loop compares it with its batch size)."""
        return int(self._offsets[-1])

    @property
    def n_records(self) -> int:
        """Recordings that contribute at least one window to this split."""
        return len(self._parts)

    def summary(self) -> str:
        """One line: windows, window length and recordings of this split."""
        return split_summary(len(self), self.split, self.window_s, [rec.path for rec, *_ in self._parts])

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        index, n = int(index), len(self)
        if not -n <= index < n:
            raise IndexError(f"window {index} out of range for {n} windows")
        index %= n
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        rec, first, stop = self._parts[part]
        if seed is not None:
            rng = np.random.default_rng(seed)
            start = float(rng.uniform(first, stop - self.window_s)) if self.random_crop else \
                first + (index - int(self._offsets[part])) * self.window_s
            n_rec = len(rec.channels)
            rows = rng.choice(n_rec, self.n_channels, replace=n_rec < self.n_channels)
        else:
            start = first + (index - int(self._offsets[part])) * self.window_s
            rows = np.round(np.linspace(0, len(rec.channels) - 1, self.n_channels)).astype(int)
        x = read_eeg_window(rec, start, self.window_s, self.fs, self.band, self.notch_hz,
                            self.reref_min_channels, self.clip, rows=rows)
        return {"signal": torch.from_numpy(np.ascontiguousarray(x)), "fs": self.fs,
                "channels": ",".join(rec.names[r] for r in rows), "subject": rec.name, "record": rec.path,
                "start_s": float(start)}

    def __repr__(self) -> str:
        return (f"EEGWindows({len(self._parts)} {self.split} parts, {len(self)} windows of {self.window_s:g} s at "
                f"{self.fs:g} Hz, {self.n_channels} channels each)")
