"""A window of any recording, every channel resampled to one rate (:func:`read_window_resampled`).

>>> info = read_header("mitdb/100")                                    # doctest: +SKIP
>>> x = read_window_resampled(info, 10.0, 10.0, ["MLII", "V5"], 500.0)  # float32[2, 5000]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.filters import rational_ratio, resample
from modalities.signals.formats import read_frames
from modalities.signals.record import RecordInfo

__all__ = ["read_window_resampled"]


def read_window_resampled(
    info: RecordInfo, start_s: float, duration_s: float, channels: Sequence[str], fs_out: float
) -> np.ndarray:
    """Read ``duration_s`` seconds from ``start_s`` and resample every channel to ``fs_out``.

    Works for every format (:func:`~modalities.signals.formats.read_frames` dispatches on
    ``info.format``) and reads only the window plus the margin below: WFDB ``rdrecord(sampfrom,
    sampto)``, EDF/BDF ``readSignal(start, n)``, FIF/EEGLAB ``get_data(start=, stop=)`` on a
    ``preload=False`` raw; CSV is parsed once per process and sliced. Values are in the file's
    physical units (``info.units``: mne-read formats are in SI units, e.g. V).

    A margin of a few input samples is read on each side (inside the record) so that the
    polyphase filter of :func:`~modalities.signals.filters.resample` has no edge transient in the
    window. Output sample ``n`` is at time ``start_s + n / fs_out`` (to within one output sample).

    Returns:
        float32[len(channels), round(duration_s * fs_out)]; NaNs (WFDB missing samples) become 0.

    Raises:
        DataError: the window is not inside the record, or a channel is unknown.
    """
    n_out = int(round(duration_s * fs_out))
    half_frame = 0.5 / info.fs
    if duration_s <= 0 or n_out < 1 or start_s < -half_frame or (
        start_s + duration_s > info.duration_s + half_frame
    ):
        raise DataError(
            f"{info.path}: window {start_s:g} s + {duration_s:g} s is outside the record's "
            f"{info.duration_s:g} s or empty"
        )
    idx = [info._channel_index(c) for c in channels]
    out = np.zeros((len(idx), n_out), dtype=np.float32)
    if not idx:
        return out

    # The read spans [f0 - margin, f1 + margin) frames. The margin covers resample_poly's filter
    # (10 * max(up, down) upsampled samples either side) and is a whole number of resampling
    # periods, so that the output grid of every channel falls exactly on the window's first frame.
    margin, period = 0, 1
    for ch in set(idx):
        spf = info.samples_per_frame[ch]
        up, down = rational_ratio(info.fs * spf, fs_out)
        if (up, down) != (1, 1):
            margin = max(margin, math.ceil((math.ceil(10 * max(up, down) / up) + 2) / spf))
        period = math.lcm(period, down // math.gcd(down, spf * up))
    margin = -(-margin // period) * period
    f0 = int(math.floor(start_s * info.fs + 1e-9))
    f1 = int(math.ceil((start_s + duration_s) * info.fs - 1e-9))
    first, last = f0 - margin, f1 + margin
    raw = read_frames(info, max(first, 0), min(last, info.n_frames), channels)

    # Channels at the same rate are resampled together: one polyphase pass per rate.
    rows_by_spf: dict[int, list[int]] = {}
    for row, ch in enumerate(idx):
        rows_by_spf.setdefault(info.samples_per_frame[ch], []).append(row)
    for spf, rows in rows_by_spf.items():
        fs_ch = info.fs * spf
        x = np.nan_to_num(np.stack([raw[r] for r in rows]), nan=0.0, posinf=0.0, neginf=0.0)
        # Near the record's ends, extend with the edge value instead of resample_poly's zeros.
        pad = (spf * max(0, -first), spf * max(0, last - info.n_frames))
        if pad != (0, 0):
            x = np.pad(x, ((0, 0), pad), mode="edge")
        y = resample(x, fs_ch, fs_out)
        up, down = rational_ratio(fs_ch, fs_out)
        k0 = int(round((start_s * info.fs - first) * spf * up / down))
        y = y[:, k0 : k0 + n_out]
        if y.shape[1] < n_out:  # rounding at the very end of a record
            y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])), mode="edge" if y.shape[1] else "constant")
        out[rows] = y
    return out
