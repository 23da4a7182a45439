"""Signal file formats: inspect a file into a :class:`~modalities.signals.record.RecordInfo`, read frames.

Every format module declares its :class:`~modalities.signals.formats.base.FormatReader` (``FORMATS``);
they are registered here in :data:`READERS` by format name and found from a file suffix by
:func:`format_of`. A format offers two functions:

- ``inspect(path, fs) -> RecordInfo | None``: what the file holds (rate, length, channels, units,
  types) without reading samples where the format allows; None for a file that holds no signal
  (an EDF+ with annotations only, e.g. a hypnogram: :mod:`~modalities.signals.annotations` reads it).
- ``read(info, start, stop, rows) -> list[float64[(stop - start) * samples_per_frame[row]]]``:
  frames ``[start, stop)`` of the channels at indices ``rows``, each at the channel's own rate, in
  physical units (frames: :mod:`modalities.signals.record`).

Formats:

========  ======================  ===================================================================
format    suffixes                library, laziness (module)
========  ======================  ===================================================================
``wfdb``  ``.hea`` + signal       ``wfdb.rdrecord(sampfrom, sampto)`` seeks to the window (:mod:`.wfdb`)
          files
``edf``   ``.edf``                pyedflib ``EdfReader.readSignal(ch, start, n)`` (a seek per read);
                                  files pyedflib refuses (EDF+D, non-compliant headers) go through mne
                                  (:mod:`.edf`)
``bdf``   ``.bdf``                as ``edf`` (24-bit BioSemi)
``fif``   ``.fif``, ``.fif.gz``   mne ``read_raw_fif(preload=False)`` + ``get_data(start=, stop=)``
                                  (:mod:`.mne`)
``set``   ``.set`` + ``.fdt``     mne ``read_raw_eeglab(preload=False)``; a ``.set`` with embedded
                                  data is loaded whole by mne (MATLAB files cannot be read in parts)
``csv``   ``.csv``, ``.tsv``      parsed once per process (text has no random access), then sliced;
                                  ``.txt`` too, but only as a single file (folder scans skip ``.txt``);
                                  the rate and timing rules are in :mod:`.csv`
``npz``   ``.npz``                NumPy arrays ``data`` [C, T] + ``sf`` (+ ``chan``), loaded once per
                                  process (:mod:`.npz`)
========  ======================  ===================================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.formats import csv, edf, mne, npz, wfdb
from modalities.signals.formats.base import FormatReader
from modalities.signals.record import RecordInfo

__all__ = [
    "FormatReader",
    "READERS",
    "SINGLE_FILE_SUFFIXES",
    "close_readers",
    "format_of",
    "inspect_file",
    "is_split_continuation",
    "read_frames",
    "supported_suffixes",
]

READERS: dict[str, FormatReader] = {r.format: r for module in (wfdb, edf, mne, csv, npz) for r in module.FORMATS}

# Read as one-column text when given as a single file (with its rate), never picked up by folder
# scans: a folder's .txt files are READMEs, checksums and notes far more often than signals.
SINGLE_FILE_SUFFIXES = {".txt": "csv"}


def format_of(path: str | Path, single_file: bool = False) -> str | None:
    """The format of a file from its suffix (case-insensitive), or None for an unsupported one.
    ``single_file`` also accepts :data:`SINGLE_FILE_SUFFIXES` (``.txt``)."""
    name = Path(path).name.lower()
    for fmt, reader in READERS.items():
        if any(name.endswith(s) for s in reader.suffixes):
            return fmt
    if single_file:
        return SINGLE_FILE_SUFFIXES.get(Path(name).suffix)
    return None


_FIF_PART = re.compile(r"^(?P<base>.+)-(?P<n>\d+)(?P<ext>\.fif(\.gz)?)$", re.I)
_BIDS_PART = re.compile(r"^(?P<head>.*_split-)(?P<n>\d+)(?P<tail>_.*\.fif(\.gz)?)$", re.I)


def is_split_continuation(path: str | Path) -> bool:
    """Whether ``path`` is a second or later part of a split FIF recording (``x_raw-1.fif`` beside
    ``x_raw.fif``; BIDS ``..._split-02_meg.fif`` beside ``..._split-01_meg.fif``). mne reads the parts
    from the first one, so an index lists the first part only."""
    p = Path(path)
    m = _FIF_PART.match(p.name)
    if m is not None and int(m.group("n")) >= 1 and (p.parent / f"{m.group('base')}{m.group('ext')}").is_file():
        return True
    m = _BIDS_PART.match(p.name)
    if m is not None and int(m.group("n")) > 1:
        first = f"{m.group('head')}{'1'.zfill(len(m.group('n')))}{m.group('tail')}"
        return (p.parent / first).is_file()
    return False


def supported_suffixes() -> tuple[str, ...]:
    """Every suffix a folder scan picks up (``.hea``, ``.edf``, ...), for messages."""
    return tuple(s for r in READERS.values() for s in r.suffixes)


def inspect_file(path: str | Path, fs: float | None = None) -> RecordInfo | None:
    """Inspect one file of any supported format; None for a file that holds no signal.

    Raises:
        DataError: the suffix is not a supported format (the message lists them), or the file is
            unreadable.
    """
    p = Path(path).expanduser().absolute()
    fmt = format_of(p, single_file=True)
    if fmt is None:
        raise DataError(f"{p}: unknown signal file type {''.join(p.suffixes) or '(no suffix)'!r}; "
                        f"supported: {', '.join(supported_suffixes())}")
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return READERS[fmt].inspect(p, fs)


def read_frames(info: RecordInfo, start: int, stop: int, channels: Sequence[str] | None = None) -> list[np.ndarray]:
    """Frames ``[start, stop)`` of some channels (default all) in any format, each at its own rate.

    Returns:
        one float64[(stop - start) * samples_per_frame[c]] per channel, in physical units.

    Raises:
        DataError: unknown channel or format, a window outside ``[0, n_frames)`` or empty.
    """
    names = list(info.channels) if channels is None else list(channels)
    rows = [info._channel_index(c) for c in names]
    start, stop = int(start), int(stop)
    if not 0 <= start < stop <= info.n_frames:
        raise DataError(f"{info.path}: window [{start}, {stop}) frames is outside the record's "
                        f"[0, {info.n_frames}) or empty")
    reader = READERS.get(info.format)
    if reader is None:
        raise DataError(f"{info.path}: unknown record format {info.format!r}")
    if not rows:
        return []
    return reader.read(info, start, stop, rows)


def close_readers() -> None:
    """Drop the mne raws (FIF / EEGLAB headers) this process keeps for window reads.

    They hold no open file (mne opens the file on every ``get_data``); dropping them frees memory and
    forces the next read to parse the header again. EDF/BDF files are never kept open.
    """
    mne.OPEN_RAWS.clear()
