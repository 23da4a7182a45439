"""NumPy ``.npz`` recordings (format ``npz``): a signal array [C, T], a rate, optional channel names.

Loaded whole, once per process (a zip member cannot be memory-mapped), then sliced.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.formats.base import FormatReader, NotARecording, file_stamp, one_line
from modalities.signals.record import RecordInfo

__all__ = ["FORMATS", "inspect_npz", "read_npz"]

_NPZ_DATA = ("data", "signal", "signals", "x")
_NPZ_RATE = ("sf", "fs", "sfreq", "srate", "sample_rate", "sampling_rate")
_NPZ_NAMES = ("chan", "chans", "channels", "ch_names", "names")


@lru_cache(maxsize=8)
def _npz_arrays(path: str, stamp: tuple[int, int], fs: float | None) -> tuple[np.ndarray, float, tuple[str, ...]]:
    del stamp  # part of the cache key
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = {k.lower(): k for k in z.files}
            data_key = next((keys[k] for k in _NPZ_DATA if k in keys), None)
            if data_key is None:
                raise NotARecording(f"{path}: no signal array (one of {', '.join(_NPZ_DATA)}) among "
                                    f"{', '.join(z.files)}")
            data = np.asarray(z[data_key], dtype=np.float64)
            rate_key = next((keys[k] for k in _NPZ_RATE if k in keys), None)
            rate = float(z[rate_key]) if rate_key is not None else fs
            name_key = next((keys[k] for k in _NPZ_NAMES if k in keys), None)
            names = tuple(str(c) for c in np.atleast_1d(z[name_key])) if name_key is not None else ()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({one_line(exc)})") from None
    if rate is None or not rate > 0:
        raise NotARecording(f"{path}: no sampling rate array ({', '.join(_NPZ_RATE)}); give the rate (fs)")
    data = np.atleast_2d(data)
    if data.ndim != 2:
        raise DataError(f"{path}: signal array has shape {list(data.shape)}, expected [channels, samples]")
    if not names:
        names = ("value",) if data.shape[0] == 1 else tuple(f"value{k + 1}" for k in range(data.shape[0]))
    if len(names) != data.shape[0]:
        raise DataError(f"{path}: {len(names)} channel names for {data.shape[0]} signal rows")
    data.setflags(write=False)
    return data, float(rate), names


def inspect_npz(path: Path, fs: float | None = None) -> RecordInfo:
    """A NumPy ``.npz`` recording: a ``data`` array float[C, T] (or [T]), a rate ``sf``/``fs`` and
    optional channel names ``chan`` (YASA's demo layout). ``fs`` is used when the file has no rate.
    The arrays are loaded whole, once per process (a zip member cannot be memory-mapped).

    Raises:
        DataError: no signal array or rate, or names that do not match the rows.
    """
    data, rate, names = _npz_arrays(str(path), file_stamp(path), fs)
    return RecordInfo(
        path=str(path), name=path.stem, fs=rate, n_frames=int(data.shape[1]), channels=names,
        units=("",) * len(names), samples_per_frame=(1,) * len(names), n_segments=1, comments=(),
        format="npz", channel_types=tuple(infer_channel_type(c) for c in names),
    )


def read_npz(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Columns ``[start, stop)`` of the loaded array."""
    data, _, _ = _npz_arrays(info.path, file_stamp(Path(info.path)), info.fs)
    return [np.array(data[r, start:stop]) for r in rows]


FORMATS = (FormatReader("npz", (".npz",), inspect_npz, read_npz),)
