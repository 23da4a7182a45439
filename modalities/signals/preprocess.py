"""One model input window of a signal record, built as :class:`~modalities.signals.windows.SignalWindows` builds it.

The probes of every signal modality read their windows through :func:`preprocess_window`, so probe inputs match
the pretraining inputs: the record's channels are read and resampled to ``fs``
(:func:`~modalities.signals.resampled.read_window_resampled`), band-passed
(:func:`~modalities.signals.filters.bandpass`), z-scored per channel and clipped
(:func:`~modalities.signals.filters.normalize`), each into the output row its mapping names; other rows stay zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from modalities.signals.filters import bandpass, normalize
from modalities.signals.record import RecordInfo
from modalities.signals.resampled import read_window_resampled

__all__ = ["Band", "preprocess_window"]

# (low, high) cut-offs in Hz of the band-pass (either may be None); None skips the band-pass.
Band = tuple[float | None, float | None] | None


def preprocess_window(info: RecordInfo, start_s: float, window_s: float, mapping: Sequence[tuple[str, int]],
                      fs: float, n_rows: int, band: Band, clip: float | None) -> np.ndarray:
    """One model input, float32[n_rows, round(window_s * fs)].

    ``mapping`` pairs a record channel with the output row it fills; other rows are zero (a z-scored all-zero row
    stays zero).
    """
    x = np.zeros((n_rows, int(round(window_s * fs))), dtype=np.float32)
    if not mapping:
        return x
    names = [name for name, _ in mapping]
    rows = [row for _, row in mapping]
    # filtering and z-scoring are per channel, in the reader's precision: the all-zero rows of missing channels
    # are skipped
    present = read_window_resampled(info, start_s, window_s, names, fs)
    if band is not None:
        present = bandpass(present, fs, band[0], band[1])
    x[rows] = normalize(present, clip=clip)
    return x
