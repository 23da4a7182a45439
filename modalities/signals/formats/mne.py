"""FIF and EEGLAB ``.set`` recordings through mne (also the EDF/BDF files pyedflib refuses).

- ``fif`` (``.fif``, ``.fif.gz``): ``mne.io.read_raw_fif(preload=False)`` + ``get_data(start=, stop=)``.
- ``set`` (``.set`` + ``.fdt``): ``mne.io.read_raw_eeglab(preload=False)``; a ``.set`` with embedded
  data is loaded whole by mne (MATLAB files cannot be read in parts).

mne raws (``preload=False``, which open their file on every ``get_data``) are kept per process, a few at
most (:data:`OPEN_RAWS`), keyed by path, process id and file stamps, so a changed file is parsed again.
Channel types come from the file.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.formats.base import FormatReader, one_line, record_name
from modalities.signals.record import RecordInfo

__all__ = ["FORMATS", "OPEN_RAWS", "inspect_mne", "mne_info", "read_mne"]

_OPEN_READERS = 16

_MNE_TYPES = {
    "eeg": "eeg", "seeg": "eeg", "ecog": "eeg", "dbs": "eeg", "eog": "eog", "emg": "emg", "ecg": "ecg",
    "resp": "resp", "stim": "stim", "syst": "misc", "bio": "misc", "misc": "misc", "temperature": "misc",
    "gsr": "misc",
}


def _stamp(path: str) -> tuple[int, ...] | None:
    """mtime and size of a file and of its EEGLAB ``.fdt`` data file if any: a change reopens it."""
    out: list[int] = []
    for p in (path, str(Path(path).with_suffix(".fdt")) if path.lower().endswith(".set") else None):
        if p is None:
            continue
        try:
            st = os.stat(p)
        except OSError:
            if p == path:
                return None
            continue
        out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


class _OpenFiles:
    """A small LRU of per-process reader objects (mne raws) keyed by path, process id and file stamps;
    evicted ones are closed."""

    def __init__(self, opener: Callable[[str], Any], closer: Callable[[Any], None]) -> None:
        self._opener, self._closer = opener, closer
        self._open: OrderedDict[tuple[str, int, tuple[int, ...] | None], Any] = OrderedDict()

    def get(self, path: str) -> Any:
        key = (path, os.getpid(), _stamp(path))
        handle = self._open.get(key)
        if handle is not None:
            self._open.move_to_end(key)
            return handle
        for stale in [k for k in self._open if k[0] == path and k[1] == key[1]]:
            self._closer(self._open.pop(stale))  # the file changed since it was opened
        handle = self._opener(path)
        self._open[key] = handle
        while len(self._open) > _OPEN_READERS:
            (_, pid, _), old = self._open.popitem(last=False)
            if pid == os.getpid():
                try:
                    self._closer(old)
                except Exception:  # a handle that cannot close is dropped all the same
                    pass
        return handle

    def clear(self) -> None:
        while self._open:
            (_, pid, _), old = self._open.popitem()
            if pid == os.getpid():
                try:
                    self._closer(old)
                except Exception:
                    pass


def _mne_open(path: str) -> Any:
    import mne

    suffix = Path(path).suffix.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if suffix == ".set":
            try:
                return mne.io.read_raw_eeglab(path, preload=False, verbose="error")
            except Exception:  # data inside the .set: a MATLAB file can only be loaded whole
                return mne.io.read_raw_eeglab(path, preload=True, verbose="error")
        if suffix == ".bdf":
            return mne.io.read_raw_bdf(path, preload=False, verbose="error")
        if suffix == ".edf":
            return mne.io.read_raw_edf(path, preload=False, verbose="error")
        return mne.io.read_raw_fif(path, preload=False, verbose="error")


OPEN_RAWS = _OpenFiles(_mne_open, lambda raw: raw.close())
"""This process's mne raws by path: ``OPEN_RAWS.get(path)`` opens or reuses one, ``OPEN_RAWS.clear()`` drops all."""


def _mne_units(raw: Any) -> list[str]:
    from mne.io.constants import FIFF

    names = {int(FIFF.FIFF_UNIT_V): "V", int(FIFF.FIFF_UNIT_T): "T", int(FIFF.FIFF_UNIT_T_M): "T/m",
             int(FIFF.FIFF_UNIT_CEL): "C"}
    orig = getattr(raw, "_orig_units", None) or {}
    out = []
    for ch in raw.info["chs"]:
        unit = names.get(int(ch["unit"]))
        out.append(unit if unit is not None else str(orig.get(ch["ch_name"], "")).strip())
    return out


def mne_info(path: Path, raw: Any, fmt: str, name: str, comments: tuple[str, ...] = ()) -> RecordInfo | None:
    """The :class:`RecordInfo` of an mne raw read from ``path`` as format ``fmt``; None without channels."""
    names = [str(c) for c in raw.ch_names]
    if not names:
        return None
    units = _mne_units(raw)
    mne_types = raw.get_channel_types()
    kinds = []
    for ch_name, unit, mne_type in zip(names, units, mne_types):
        guessed = infer_channel_type(ch_name, unit)
        # mne calls everything "eeg" in an EDF without types; a name that says more wins there.
        kind = guessed if fmt in ("edf", "bdf") and guessed != "misc" else _MNE_TYPES.get(mne_type, guessed)
        kinds.append(kind)
    return RecordInfo(
        path=str(path), name=name, fs=float(raw.info["sfreq"]),
        n_frames=int(raw.n_times), channels=tuple(names), units=tuple(units),
        samples_per_frame=(1,) * len(names), n_segments=1, comments=comments, format=fmt,
        channel_types=tuple(kinds),
    )


def inspect_mne(path: Path, fs: float | None = None) -> RecordInfo | None:
    """FIF or EEGLAB ``.set`` through mne with ``preload=False`` (channel types from the file).

    Raises:
        DataError: mne cannot read the file.
    """
    del fs  # these formats state their rate
    fmt = "set" if path.suffix.lower() == ".set" else "fif"
    try:
        raw = OPEN_RAWS.get(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({one_line(exc)})") from None
    fdt = path.with_suffix(".fdt")
    if fmt == "set" and fdt.is_file():
        # mne trusts the header until a read runs off the end; check the size up front, like WFDB.
        need = 4 * len(raw.ch_names) * int(raw.n_times)
        size = fdt.stat().st_size
        if size != need:
            raise DataError(f"{fdt}: holds {size} bytes but {path.name} declares {len(raw.ch_names)} channels x "
                            f"{raw.n_times} float32 samples ({need} bytes)")
    return mne_info(path, raw, fmt, record_name(path, _SUFFIXES[fmt]))


def read_mne(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Frames ``[start, stop)`` through ``raw.get_data(picks, start, stop)`` on a ``preload=False`` raw."""
    try:
        raw = OPEN_RAWS.get(info.path)
        data = raw.get_data(picks=list(rows), start=int(start), stop=int(stop))
    except Exception as exc:
        raise DataError(f"{info.path}: cannot read frames [{start}, {stop}) ({one_line(exc)})") from None
    return [np.asarray(x, dtype=np.float64) for x in data]


_SUFFIXES = {"fif": (".fif", ".fif.gz"), "set": (".set",)}

FORMATS = tuple(FormatReader(fmt, suffixes, inspect_mne, read_mne) for fmt, suffixes in _SUFFIXES.items())
