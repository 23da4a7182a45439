"""Fixed-length windows over many WFDB records, read lazily, in a canonical channel layout.

Every record is split in time: its first ``1 - val_fraction`` is the train part and the rest the
val part, so train and val windows of a record never overlap. A split's epoch has one item per
non-overlapping window of its parts; item ``i`` belongs to the part that holds the ``i``-th fixed
window, so parts are drawn in proportion to their length. With ``random_crop`` and a seed the
window is then placed uniformly at random inside that part.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError
from modalities.signals.preprocess import preprocess_window
from modalities.signals.record import RecordInfo

__all__ = ["SignalWindows", "check_short_parts", "probe_part_starts", "spaced_starts", "split_summary"]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class SignalWindows(Dataset):
    """Windows of ``window_s`` seconds resampled to ``fs`` Hz in the channel order ``channels``.

    Args:
        records: indexed records (:func:`~modalities.signals.index.index_records`).
        channels: canonical output channels, e.g. the 12 ECG leads.
        fs: output sampling rate in Hz.
        window_s: window length in seconds; ``T = round(window_s * fs)``.
        split: ``"train"`` (first ``1 - val_fraction`` of every record) or ``"val"`` (the rest).
        val_fraction: fraction of every record, at its end, held out for ``"val"``.
        channel_aliases: maps a record's channel name to a canonical name, or ``None`` to ignore it;
            each canonical channel is filled from the first record channel mapping to it. Default:
            a record channel is used where its name equals a canonical name.
        band: ``(low, high)`` Hz for :func:`~modalities.signals.filters.bandpass`; ``None`` skips it.
        clip: clip of :func:`~modalities.signals.filters.normalize` (per-channel z-score).
        random_crop: place a seeded item's window uniformly at random within its part.
        transform: ``transform(x, rng) -> x`` applied to the preprocessed window (``signal``).
        views: number of augmented views per item (0: none).
        view_transform: ``view_transform(x, rng) -> x``, applied independently for each view.
        view_source: ``"window"``: every view augments the item's own window; ``"record"``: every view is
            its own random segment of the same record's split part, then augmented (positive pairs from
            data: two segments of one participant, as in the wearable foundation models, Abbaspourazad 2024).

    Items are fetched with ``ds[i]`` (the ``i``-th fixed window: deterministic) or
    ``ds[i, seed]`` (every random choice drawn from ``np.random.default_rng(seed)``) and are
    ``{"signal": float32[C, T], "fs", "subject", "record", "start_s"}`` plus
    ``"views": float32[views, C, T]`` when ``views > 0``. Canonical channels a record lacks are
    zero. The dataset holds record metadata only, never samples or open files, so it pickles
    cheaply to DataLoader workers.

    Preprocessing of a window: read and resample to ``fs`` (missing samples -> 0), ``bandpass``,
    ``normalize``, then ``transform``.

    Nothing is silent about a small corpus: records whose split part is shorter than one window are skipped with
    one warning that counts them and names the first few (:attr:`short_records` lists them all), no window at all
    is a one-line :class:`DataError`, and ``len(ds)`` is the number of windows in an epoch (:meth:`summary` says it
    in a line), which a training loop compares with its batch size.
    """

    def __init__(
        self,
        records: Sequence[RecordInfo],
        *,
        channels: Sequence[str],
        fs: float,
        window_s: float,
        split: str = "train",
        val_fraction: float = 0.1,
        channel_aliases: Callable[[str], str | None] | None = None,
        band: tuple[float | None, float | None] | None = (0.5, 100.0),
        clip: float | None = 5.0,
        random_crop: bool = True,
        transform: Transform | None = None,
        views: int = 0,
        view_transform: Transform | None = None,
        view_source: str = "window",
    ) -> None:
        records = list(records)
        where = _common_path(records)
        if split not in ("train", "val"):
            raise DataError(f"{where}: split must be 'train' or 'val', got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"{where}: val_fraction must be in [0, 1), got {val_fraction}")
        if split == "val" and val_fraction == 0.0:
            raise DataError(f"{where}: split 'val' needs val_fraction > 0")
        if not (fs > 0 and window_s > 0):
            raise DataError(f"{where}: fs and window_s must be positive, got {fs} and {window_s}")
        if views < 0 or (views > 0 and view_transform is None):
            raise DataError(f"{where}: views={views} needs views >= 0 and a view_transform")
        if not records:
            raise DataError(f"{where}: no records given")

        self.channels = tuple(channels)
        self.fs = float(fs)
        self.window_s = float(window_s)
        self.n_samples = int(round(window_s * fs))
        self.split = split
        self.val_fraction = float(val_fraction)
        self.band = tuple(band) if band is not None else None
        self.clip = clip
        self.random_crop = random_crop
        self.transform = transform
        self.views = int(views)
        self.view_transform = view_transform
        if view_source not in ("window", "record"):
            raise DataError(f"{where}: view_source must be 'window' or 'record', got {view_source!r}")
        self.view_source = view_source

        alias = channel_aliases if channel_aliases is not None else _identity
        unusable: list[str] = []
        short: list[tuple[str, float]] = []  # (record, seconds of its split part) for parts shorter than a window
        # Per part: record, (record channel, canonical row) pairs, first and last usable frame.
        self._parts: list[tuple[RecordInfo, tuple[tuple[str, int], ...], int, int]] = []
        counts: list[int] = []
        for info in records:
            sources: dict[int, str] = {}
            for name in info.channels:
                target = alias(name)
                if target in self.channels:
                    sources.setdefault(self.channels.index(target), name)
            if not sources:
                unusable.append(info.path)
                continue
            n_train = int(math.floor((1.0 - self.val_fraction) * info.n_frames))
            first, stop = (0, n_train) if split == "train" else (n_train, info.n_frames)
            n_windows = int((stop - first) / info.fs // self.window_s)
            if n_windows < 1:  # shorter than one window: named below
                short.append((info.path, (stop - first) / info.fs))
                continue
            mapping = tuple(sorted(((name, row) for row, name in sources.items()), key=lambda t: t[1]))
            self._parts.append((info, mapping, first, stop))
            counts.append(n_windows)
        if len(unusable) == len(records):
            raise DataError(
                f"{where}: no record has a channel that maps to {list(self.channels)}"
            )
        if unusable:
            warnings.warn(
                f"{len(unusable)} record(s) have no channel mapping to {list(self.channels)} and "
                f"are skipped: {', '.join(unusable)}",
                stacklevel=2,
            )
        self.short_records = tuple(path for path, _ in short)
        check_short_parts(where, split, self.window_s, self.val_fraction, short, n_used=len(self._parts))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        """The number of windows of the split: one epoch's items (the loop compares it with its batch size)."""
        return int(self._offsets[-1])

    @property
    def n_records(self) -> int:
        """Records that contribute at least one window to this split."""
        return len(self._parts)

    def subjects(self) -> list[str]:
        """The subject id (``sample["subject"]``) of each record that contributes windows."""
        return sorted({info.name for info, *_ in self._parts})

    def summary(self) -> str:
        """One line: windows, window length and records of this split, e.g. for a message about a small corpus."""
        return split_summary(len(self), self.split, self.window_s, [info.path for info, *_ in self._parts])

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"window {index} out of range for {n} windows")
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        info, mapping, first, stop = self._parts[part]
        rng = np.random.default_rng(seed if seed is not None else index)

        window_frames = int(math.ceil(self.window_s * info.fs))
        if self.random_crop and seed is not None:
            last_start = max(first, stop - window_frames)
            start_s = int(rng.integers(first, last_start + 1)) / info.fs
        else:
            start_s = first / info.fs + (index - int(self._offsets[part])) * self.window_s

        x = self._window(info, mapping, start_s, rng)

        item: dict[str, Any] = {
            "signal": torch.from_numpy(np.ascontiguousarray(x)),
            "fs": self.fs,
            "subject": info.name,
            "record": info.path,
            "start_s": float(start_s),
        }
        if self.views > 0:
            if self.view_source == "record":  # positives: other segments of the same record (subject)
                last_start = max(first, stop - window_frames)
                sources = [self._window(info, mapping, int(rng.integers(first, last_start + 1)) / info.fs, rng)
                           for _ in range(self.views)]
            else:
                sources = [x] * self.views
            views = [np.asarray(self.view_transform(v.copy(), rng), dtype=np.float32) for v in sources]
            item["views"] = torch.from_numpy(np.stack(views))
        return item

    def _window(self, info: RecordInfo, mapping: tuple[tuple[str, int], ...], start_s: float,
                rng: np.random.Generator) -> np.ndarray:
        """Read, band-pass, z-score (per present channel: :func:`preprocess_window`, as the probes read theirs) and
        transform one window -> float32[C, T]."""
        x = preprocess_window(info, start_s, self.window_s, mapping, self.fs, len(self.channels), self.band, self.clip)
        if self.transform is not None:
            x = np.asarray(self.transform(x, rng), dtype=np.float32)
        return x

    def __repr__(self) -> str:
        return (
            f"SignalWindows({len(self._parts)} {self.split} parts, {len(self)} windows of "
            f"{self.window_s:g} s at {self.fs:g} Hz, channels={list(self.channels)})"
        )


def _identity(name: str) -> str:
    return name


_LISTED = 5  # records named in a message about short records; the rest are counted


def _label(path: str, where: str) -> str:
    """A record's path relative to the corpus folder ``where`` (its own path when ``where`` is the record)."""
    try:
        rel = os.path.relpath(path, where)
    except ValueError:
        return path
    return path if rel in (".", "") or rel.startswith("..") else rel


def split_summary(n_windows: int, split: str, window_s: float, records: Sequence[str]) -> str:
    """``"1 train window of 10 s from 1 record (mimicdb/03700181)"``: what a split holds, in one line."""
    where = _common_folder(records)
    named = ", ".join(_label(r, where) for r in records[:_LISTED])
    more = f", {len(records) - _LISTED} more" if len(records) > _LISTED else ""
    return (f"{n_windows} {split} window{'s' if n_windows != 1 else ''} of {window_s:g} s from {len(records)} "
            f"record{'s' if len(records) != 1 else ''} ({named}{more})")


def check_short_parts(where: str, split: str, window_s: float, val_fraction: float,
                      short: Sequence[tuple[str, float]], n_used: int) -> None:
    """Name the records whose ``split`` part is shorter than one window: a one-line warning listing how many, the
    first few (with the part's length) and the window length when other records remain, a one-line
    :class:`DataError` when no record is left (zero windows)."""
    if not short:
        return
    listed = ", ".join(f"{_label(path, where)} {seconds:.3g} s" for path, seconds in short[:_LISTED])
    more = f", {len(short) - _LISTED} more" if len(short) > _LISTED else ""
    share = f"first {100 * (1 - val_fraction):.3g} %" if split == "train" else f"last {100 * val_fraction:.3g} %"
    fix = "longer records or a shorter data.window_s" + (" (or a larger data.val_fraction)" if split == "val" else "")
    if n_used == 0:
        if len(short) == 1:
            raise DataError(
                f"{where}: no {split} window: the record's {split} part (its {share}) lasts {short[0][1]:.3g} s, "
                f"shorter than one {window_s:g} s window; give {fix}"
            )
        raise DataError(
            f"{where}: no {split} window: the {split} part (the {share} of each record) of all {len(short)} records "
            f"is shorter than one {window_s:g} s window ({listed}{more}); give {fix}"
        )
    their = "its" if len(short) == 1 else "their"
    warnings.warn(
        f"{where}: {len(short)} of {len(short) + n_used} records skipped for {split}: {their} {split} part (the "
        f"{share} of each record) is shorter than one {window_s:g} s window ({listed}{more})",
        stacklevel=3,
    )


def _common_folder(paths: Sequence[str]) -> str:
    if not paths:
        return ""
    try:
        common = os.path.commonpath(list(paths))
    except ValueError:
        return ""
    return os.path.dirname(common) if len(paths) == 1 or common in paths else common


def _common_path(records: Sequence[RecordInfo]) -> str:
    if not records:
        return "SignalWindows"
    try:
        return os.path.commonpath([r.path for r in records]) if len(records) > 1 else records[0].path
    except ValueError:
        return records[0].path


def spaced_starts(first: float, last_start: float, stride_s: float, cap: int) -> list[float]:
    """Window starts every ``stride_s`` seconds from ``first`` up to ``last_start``; at most ``cap`` of them,
    evenly spread over the span when there are more (the probes' fixed windows).

    >>> spaced_starts(0.0, 4.0, 1.0, 3)
    [0.0, 2.0, 4.0]
    """
    if last_start < first - 1e-9 or cap < 1:
        return []
    n = int(math.floor((last_start - first) / stride_s + 1e-9)) + 1
    starts = first + stride_s * np.arange(n)
    if n > cap:
        starts = starts[np.unique(np.round(np.linspace(0, n - 1, cap)).astype(int))]
    return [float(s) for s in starts]


def probe_part_starts(duration_s: float, window_s: float, stride_s: float, max_windows: int,
                      train_fraction: float = 2 / 3, folds: int | None = None) -> dict[str, list[float]]:
    """The probes' fixed windows of one recording, by part, none crossing a part's edge.

    ``folds=None``: ``{"train": ..., "test": ...}``, the first ``train_fraction`` of the recording and the rest, at
    most ``ceil(train_fraction * max_windows)`` train and the rest of ``max_windows`` test windows.
    ``folds=K``: ``{"fold0": ..., "fold{K-1}": ...}``, K equal consecutive blocks of time with at most
    ``ceil(max_windows / K)`` windows each (blocked cross-validation). Windows are :func:`spaced_starts`.

    >>> probe_part_starts(12.0, 2.0, 2.0, 6, folds=3)
    {'fold0': [0.0, 2.0], 'fold1': [4.0, 6.0], 'fold2': [8.0, 10.0]}
    """
    if folds:
        block = duration_s / folds
        cap = int(math.ceil(max_windows / folds))
        return {f"fold{k}": spaced_starts(k * block, (k + 1) * block - window_s, stride_s, cap) for k in range(folds)}
    split = train_fraction * duration_s
    cap_train = int(math.ceil(train_fraction * max_windows))
    return {"train": spaced_starts(0.0, split - window_s, stride_s, cap_train),
            "test": spaced_starts(split, duration_s - window_s, stride_s, max_windows - cap_train)}
