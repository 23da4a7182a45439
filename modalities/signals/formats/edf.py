"""EDF / EDF+ / BDF / BDF+ recordings through pyedflib; files pyedflib refuses go through mne.

- ``edf`` (``.edf``): pyedflib ``EdfReader.readSignal(ch, start, n)`` (a seek per read); files pyedflib
  refuses (EDF+D, non-compliant headers) are read by :mod:`modalities.signals.formats.mne`.
- ``bdf`` (``.bdf``): as ``edf`` (24-bit BioSemi).

EDF/BDF files are opened and closed on every read (header only, 0.2 ms). Channels of different rates
make a frame of several samples (:func:`~modalities.signals.record.frame_layout`).

**EDF+D** (discontinuous): pyedflib refuses these files and mne reads them with their data records
back to back, ignoring each record's onset. The library does the same and documents it: sample
times of an EDF+D count only recorded time (gaps are removed, not zero-filled), the record's
``comments`` say ``EDF+D``, and :func:`~modalities.signals.annotations.read_annotations` returns
onsets in file time (which disagree with sample times after the first gap). A warning is issued.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.formats.base import FormatReader, one_line, record_name
from modalities.signals.formats.mne import mne_info, read_mne
from modalities.signals.record import RecordInfo, frame_layout

__all__ = ["FORMATS", "edf_refusal", "inspect_edf", "open_pyedflib", "read_edf"]

_SUFFIXES = {"edf": (".edf",), "bdf": (".bdf",)}


def open_pyedflib(path: str, annotations: bool = False) -> Any:
    """A pyedflib reader; without ``annotations`` edflib skips its scan of every data record's TALs."""
    import pyedflib

    mode = pyedflib.READ_ALL_ANNOTATIONS if annotations else pyedflib.DO_NOT_READ_ANNOTATIONS
    return pyedflib.EdfReader(path, annotations_mode=mode)


def edf_refusal(path: Path, exc: BaseException) -> str:
    """pyedflib's reason, without the path it repeats; a DataError when mne must not be tried instead."""
    reason = one_line(exc).replace(f"{path}: ", "")
    if "already been opened" in reason:  # edflib opens a file once per process: someone holds it
        raise DataError(f"{path}: already open in this process through pyedflib; close that reader first")
    if "(Filesize)" in reason:  # mne would read the whole records that remain, silently
        raise DataError(f"{path}: truncated, the file is shorter than its header's data records declare")
    return reason


def _name(path: Path) -> str:
    return record_name(path, _SUFFIXES["edf"] + _SUFFIXES["bdf"])


def inspect_edf(path: Path, fs: float | None = None) -> RecordInfo | None:
    """EDF / EDF+ / BDF / BDF+ header through pyedflib (no sample read); mne where pyedflib refuses.

    Returns None for a file without signals (annotations only, such as a hypnogram).

    Raises:
        DataError: neither pyedflib nor mne can read the file (the message gives pyedflib's reason).
    """
    del fs  # EDF headers state every rate
    fmt = "bdf" if path.suffix.lower() == ".bdf" else "edf"
    try:
        reader = open_pyedflib(str(path))
    except (OSError, ValueError) as exc:
        return _inspect_edf_with_mne(path, fmt, edf_refusal(path, exc))
    try:
        n = int(reader.signals_in_file)
        if n == 0:
            return None
        duration = Fraction(reader.datarecord_duration).limit_denominator(1_000_000)
        per_record = [int(reader.samples_in_datarecord(i)) for i in range(n)]
        n_records = int(reader.datarecords_in_file)
        labels = [str(s).strip() for s in reader.getSignalLabels()]
        units = [str(reader.getPhysicalDimension(i)).strip() for i in range(n)]
        kind = {0: "EDF", 1: "EDF+C", 2: "BDF", 3: "BDF+C"}.get(int(reader.filetype), "EDF")
        equipment = str(reader.getEquipment()).strip()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the EDF header ({one_line(exc)})") from None
    finally:
        reader.close()  # indexing leaves no file open
    if duration <= 0:
        raise DataError(f"{path}: EDF data record duration is {float(duration)} s; cannot infer a rate")
    rates = [Fraction(s) / duration for s in per_record]
    frame_fs, spf = frame_layout(rates)
    frames_per_record = int(round(duration * Fraction(frame_fs).limit_denominator(1_000_000)))
    comments = tuple(c for c in (kind, equipment) if c)
    return RecordInfo(
        path=str(path), name=_name(path), fs=frame_fs, n_frames=n_records * frames_per_record,
        channels=tuple(labels), units=tuple(units), samples_per_frame=spf, n_segments=1,
        comments=comments, format=fmt,
        channel_types=tuple(infer_channel_type(c, u) for c, u in zip(labels, units)),
    )


def _inspect_edf_with_mne(path: Path, fmt: str, refused: str) -> RecordInfo | None:
    import mne

    try:
        reader = mne.io.read_raw_bdf if fmt == "bdf" else mne.io.read_raw_edf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = reader(str(path), preload=False, verbose="error")
    except Exception as exc:  # mne raises bare ValueError/RuntimeError/IndexError on broken headers
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({refused}; mne: {one_line(exc)})") from None
    info = mne_info(path, raw, fmt, _name(path), comments=(f"read by mne: pyedflib refused it ({refused})",))
    if info is not None and "discontinuous" in refused.lower():
        warnings.warn(
            f"{path}: EDF+D (discontinuous) file: its data records are read back to back, so sample "
            "times skip the gaps between records",
            stacklevel=3,
        )
        info = replace(info, comments=("EDF+D",) + info.comments)
    return info


def read_edf(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Frames ``[start, stop)`` of channels ``rows``: ``readSignal(ch, start * spf, n * spf)`` each.

    The file is opened (header only, no annotation scan: 0.2 ms for the 64-channel fixture) and
    closed on every call: edflib refuses a second open of a file in one process, and a handle
    inherited by a forked DataLoader worker would share its file position with the parent.
    """
    if info.comments and any(c.startswith("read by mne") for c in info.comments):
        return read_mne(info, start, stop, rows)
    path = Path(info.path)
    try:
        reader = open_pyedflib(info.path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot open ({edf_refusal(path, exc)})") from None
    try:
        out = []
        for row in rows:
            spf = info.samples_per_frame[row]
            x = reader.readSignal(int(row), start=start * spf, n=(stop - start) * spf, digital=False)
            if len(x) != (stop - start) * spf:
                raise ValueError(f"channel {info.channels[row]!r} returned {len(x)} of {(stop - start) * spf} samples")
            out.append(np.asarray(x, dtype=np.float64))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read frames [{start}, {stop}) ({one_line(exc)})") from None
    finally:
        reader.close()
    return out


FORMATS = tuple(FormatReader(fmt, suffixes, inspect_edf, read_edf) for fmt, suffixes in _SUFFIXES.items())
