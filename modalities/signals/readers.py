"""Per-format readers: inspect a file into a :class:`~modalities.signals.records.RecordInfo`, read frames.

Every format offers two functions, registered in :data:`READERS` by format name and found from a file
suffix by :func:`format_of`:

- ``inspect(path, fs) -> RecordInfo | None``: what the file holds (rate, length, channels, units,
  types) without reading samples where the format allows; None for a file that holds no signal
  (an EDF+ with annotations only, e.g. a hypnogram: :mod:`~modalities.signals.annotations` reads it).
- ``read(info, start, stop, rows) -> list[float64[(stop - start) * samples_per_frame[row]]]``:
  frames ``[start, stop)`` of the channels at indices ``rows``, each at the channel's own rate, in
  physical units.

A *frame* is the shortest stretch holding a whole number of samples of every channel (as in WFDB):
``fs`` is the greatest common divisor of the channel rates and channel ``c`` has
``samples_per_frame[c] = rate_c / fs`` samples per frame. Single-rate files have ``fs`` = their rate.

Formats:

========  ======================  ===================================================================
format    suffixes                library, laziness
========  ======================  ===================================================================
``edf``   ``.edf``                pyedflib ``EdfReader.readSignal(ch, start, n)`` (a seek per read);
                                  files pyedflib refuses (EDF+D, non-compliant headers) go through mne
``bdf``   ``.bdf``                as ``edf`` (24-bit BioSemi)
``fif``   ``.fif``, ``.fif.gz``   mne ``read_raw_fif(preload=False)`` + ``get_data(start=, stop=)``
``set``   ``.set`` + ``.fdt``     mne ``read_raw_eeglab(preload=False)``; a ``.set`` with embedded
                                  data is loaded whole by mne (MATLAB files cannot be read in parts)
``csv``   ``.csv``, ``.tsv``      parsed once per process (text has no random access), then sliced;
                                  ``.txt`` too, but only as a single file (folder scans skip ``.txt``)
``npz``   ``.npz``                NumPy arrays ``data`` [C, T] + ``sf`` (+ ``chan``), loaded once per
                                  process
========  ======================  ===================================================================

EDF/BDF files are opened and closed on every read (header only, 0.2 ms); mne raws (``preload=False``,
which open their file on every ``get_data``) are kept per process, a few at most, keyed by path, process id
and file stamps, so a changed file is parsed again.

**EDF+D** (discontinuous): pyedflib refuses these files and mne reads them with their data records
back to back, ignoring each record's onset. The library does the same and documents it: sample
times of an EDF+D count only recorded time (gaps are removed, not zero-filled), the record's
``comments`` say ``EDF+D``, and :func:`~modalities.signals.annotations.read_annotations` returns
onsets in file time (which disagree with sample times after the first gap). A warning is issued.

**CSV**: one column per channel; a header row is optional. The rate comes from, in this order:
a time column (``time``/``timer``/``t``/``timestamp``/``*_ms``/``*_s``, numbers; or
``datetime``/``date``/``timestamp`` holding ISO date-times), a sample-rate column (``fs``,
``sample_rate``, ``sampling_rate``, ``srate``, ``sf``: a constant), or the ``fs`` argument (a
file with no time, such as heartpy's ``data.csv``, needs it). Numeric time columns named ``*ms*``
or ``millis*`` are milliseconds, ``*_s``/``sec*``/``seconds`` seconds; a bare ``time``/``timer``/``t``
is milliseconds when its median step exceeds 1 (the rate would otherwise be below 1 Hz), else seconds.

Timestamps must be regular. With ``n`` samples at times ``t_0 .. t_{n-1}`` the rate is
``fs = (n - 1) / (t_{n-1} - t_0)`` and the file is accepted when

1. time never goes back (``t_{i+1} >= t_i``; equal stamps are a quantised clock, allowed),
2. no step is longer than :data:`CSV_MAX_STEP_PERIODS` periods (``10 / fs``): a longer one is a gap,
3. no stamp is further than ``max(CSV_MAX_DRIFT_S, CSV_MAX_DRIFT_PERIODS / fs)`` from the uniform
   grid ``t_0 + i / fs``: a slower or faster stretch is not one rate.

This accepts the clock jitter of real loggers: heartpy's ``data3.csv`` (timestamps quantised to
the 15.6 ms Windows clock tick, 36 % of them repeated, mean rate 100.418 Hz) has a longest step of
49 ms (4.9 periods) and a largest grid deviation of 0.27 s; ``data2.csv`` (timer in ms, 116.988 Hz)
steps by 8.5479 ms +- 1 us. A second missing anywhere, or time running backwards, is rejected.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.records import RecordInfo

__all__ = [
    "check_regular_times",
    "close_readers",
    "CSV_MAX_DRIFT_PERIODS",
    "CSV_MAX_DRIFT_S",
    "CSV_MAX_STEP_PERIODS",
    "FormatReader",
    "NotARecording",
    "READERS",
    "format_of",
    "inspect_csv",
    "inspect_edf",
    "inspect_file",
    "inspect_mne",
    "inspect_npz",
    "is_split_continuation",
    "read_frames",
]

CSV_MAX_STEP_PERIODS = 10.0
CSV_MAX_DRIFT_S = 0.5
CSV_MAX_DRIFT_PERIODS = 50.0

_OPEN_READERS = 16


class NotARecording(DataError):
    """A file with a supported suffix that holds no recording (a CSV table of text, or without a rate)."""


@dataclass(frozen=True)
class FormatReader:
    """The two functions of one file format (see the module docstring)."""

    format: str
    suffixes: tuple[str, ...]
    inspect: Callable[[Path, float | None], RecordInfo | None]
    read: Callable[[RecordInfo, int, int, Sequence[int]], list[np.ndarray]]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ------------------------------------------------------------------------------------ frame rates


def _as_fraction(rate: float) -> Fraction:
    return Fraction(rate).limit_denominator(1_000_000)


def frame_layout(rates: Sequence[float | Fraction]) -> tuple[float, tuple[int, ...]]:
    """``(fs, samples_per_frame)``: the frame rate (GCD of the channel rates) and each channel's
    samples per frame. ``frame_layout([100, 1]) == (1.0, (100, 1))``; ``([128] * 3) -> (128.0, (1, 1, 1))``."""
    fracs = [r if isinstance(r, Fraction) else _as_fraction(float(r)) for r in rates]
    if not fracs or any(f <= 0 for f in fracs):
        raise ValueError(f"rates must be positive, got {list(rates)}")
    num, den = fracs[0].numerator, fracs[0].denominator
    for f in fracs[1:]:
        num = math.gcd(num * f.denominator, f.numerator * den)
        den = den * f.denominator
        g = math.gcd(num, den)
        num, den = num // g, den // g
    fs = Fraction(num, den)
    return float(fs), tuple(int(f / fs) for f in fracs)


# ------------------------------------------------------------------------------- per-process cache


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


# ------------------------------------------------------------------------------------------ EDF/BDF


def close_readers() -> None:
    """Drop the mne raws (FIF / EEGLAB headers) this process keeps for window reads.

    They hold no open file (mne opens the file on every ``get_data``); dropping them frees memory and
    forces the next read to parse the header again. EDF/BDF files are never kept open.
    """
    _MNE_FILES.clear()


def _pyedflib_open(path: str, annotations: bool = False) -> Any:
    """A pyedflib reader; without ``annotations`` edflib skips its scan of every data record's TALs."""
    import pyedflib

    mode = pyedflib.READ_ALL_ANNOTATIONS if annotations else pyedflib.DO_NOT_READ_ANNOTATIONS
    return pyedflib.EdfReader(path, annotations_mode=mode)


def _edf_refusal(path: Path, exc: BaseException) -> str:
    """pyedflib's reason, without the path it repeats; a DataError when mne must not be tried instead."""
    reason = _one_line(exc).replace(f"{path}: ", "")
    if "already been opened" in reason:  # edflib opens a file once per process: someone holds it
        raise DataError(f"{path}: already open in this process through pyedflib; close that reader first")
    if "(Filesize)" in reason:  # mne would read the whole records that remain, silently
        raise DataError(f"{path}: truncated, the file is shorter than its header's data records declare")
    return reason


def inspect_edf(path: Path, fs: float | None = None) -> RecordInfo | None:
    """EDF / EDF+ / BDF / BDF+ header through pyedflib (no sample read); mne where pyedflib refuses.

    Returns None for a file without signals (annotations only, such as a hypnogram).

    Raises:
        DataError: neither pyedflib nor mne can read the file (the message gives pyedflib's reason).
    """
    del fs  # EDF headers state every rate
    fmt = "bdf" if path.suffix.lower() == ".bdf" else "edf"
    try:
        reader = _pyedflib_open(str(path))
    except (OSError, ValueError) as exc:
        return _inspect_edf_with_mne(path, fmt, _edf_refusal(path, exc))
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
        raise DataError(f"{path}: cannot read the EDF header ({_one_line(exc)})") from None
    finally:
        reader.close()  # indexing leaves no file open
    if duration <= 0:
        raise DataError(f"{path}: EDF data record duration is {float(duration)} s; cannot infer a rate")
    rates = [Fraction(s) / duration for s in per_record]
    frame_fs, spf = frame_layout(rates)
    frames_per_record = int(round(duration * Fraction(frame_fs).limit_denominator(1_000_000)))
    comments = tuple(c for c in (kind, equipment) if c)
    return RecordInfo(
        path=str(path), name=_record_name(path), fs=frame_fs, n_frames=n_records * frames_per_record,
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
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({refused}; mne: {_one_line(exc)})") from None
    info = _mne_info(path, raw, fmt, comments=(f"read by mne: pyedflib refused it ({refused})",))
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
        reader = _pyedflib_open(info.path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot open ({_edf_refusal(path, exc)})") from None
    try:
        out = []
        for row in rows:
            spf = info.samples_per_frame[row]
            x = reader.readSignal(int(row), start=start * spf, n=(stop - start) * spf, digital=False)
            if len(x) != (stop - start) * spf:
                raise ValueError(f"channel {info.channels[row]!r} returned {len(x)} of {(stop - start) * spf} samples")
            out.append(np.asarray(x, dtype=np.float64))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read frames [{start}, {stop}) ({_one_line(exc)})") from None
    finally:
        reader.close()
    return out


# ---------------------------------------------------------------------------------- FIF/EEGLAB (mne)

_MNE_TYPES = {
    "eeg": "eeg", "seeg": "eeg", "ecog": "eeg", "dbs": "eeg", "eog": "eog", "emg": "emg", "ecg": "ecg",
    "resp": "resp", "stim": "stim", "syst": "misc", "bio": "misc", "misc": "misc", "temperature": "misc",
    "gsr": "misc",
}


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


_MNE_FILES = _OpenFiles(_mne_open, lambda raw: raw.close())


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


def _record_name(path: Path) -> str:
    """The file name without its format suffix (``rec.fif.gz`` -> ``rec``, ``a.b.edf`` -> ``a.b``)."""
    lower = path.name.lower()
    for reader in READERS.values():
        for suffix in sorted(reader.suffixes, key=len, reverse=True):
            if lower.endswith(suffix):
                return path.name[: -len(suffix)]
    return path.stem


def _mne_info(path: Path, raw: Any, fmt: str, comments: tuple[str, ...] = ()) -> RecordInfo | None:
    names = [str(c) for c in raw.ch_names]
    if not names:
        return None
    units = _mne_units(raw)
    mne_types = raw.get_channel_types()
    kinds = []
    for name, unit, mne_type in zip(names, units, mne_types):
        guessed = infer_channel_type(name, unit)
        # mne calls everything "eeg" in an EDF without types; a name that says more wins there.
        kind = guessed if fmt in ("edf", "bdf") and guessed != "misc" else _MNE_TYPES.get(mne_type, guessed)
        kinds.append(kind)
    return RecordInfo(
        path=str(path), name=_record_name(path), fs=float(raw.info["sfreq"]),
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
        raw = _MNE_FILES.get(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({_one_line(exc)})") from None
    fdt = path.with_suffix(".fdt")
    if fmt == "set" and fdt.is_file():
        # mne trusts the header until a read runs off the end; check the size up front, like WFDB.
        need = 4 * len(raw.ch_names) * int(raw.n_times)
        size = fdt.stat().st_size
        if size != need:
            raise DataError(f"{fdt}: holds {size} bytes but {path.name} declares {len(raw.ch_names)} channels x "
                            f"{raw.n_times} float32 samples ({need} bytes)")
    return _mne_info(path, raw, fmt)


def read_mne(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Frames ``[start, stop)`` through ``raw.get_data(picks, start, stop)`` on a ``preload=False`` raw."""
    try:
        raw = _MNE_FILES.get(info.path)
        data = raw.get_data(picks=list(rows), start=int(start), stop=int(stop))
    except Exception as exc:
        raise DataError(f"{info.path}: cannot read frames [{start}, {stop}) ({_one_line(exc)})") from None
    return [np.asarray(x, dtype=np.float64) for x in data]


# ---------------------------------------------------------------------------------------------- CSV

_TIME_NAMES = re.compile(r"^(t|time|timer|times|timestamp|timestamps|time_?ms|time_?s|ms|millis.*|sec|secs|"
                         r"seconds|elapsed.*|.*_ms|.*_s|datetime|date|date_?time)$", re.I)
_RATE_NAMES = re.compile(r"^(fs|sf|srate|sample_?rate|sampling_?rate|sampling_?frequency|hz)$", re.I)


@dataclass(frozen=True)
class _CsvLayout:
    """What :func:`_parse_csv` found: the value columns, their data and the rate with its evidence."""

    names: tuple[str, ...]
    values: np.ndarray  # float64[C, N]
    fs: float
    how: str


def _read_rows(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """Header (or None) and data rows; a table of text (metadata, labels) is refused on its first
    data row, before the rest of a possibly large file is parsed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            head = f.read(8192)
            f.seek(0)
            try:
                dialect: Any = csv.Sniffer().sniff(head, delimiters=",;\t ")
            except csv.Error:
                dialect = csv.excel
            reader = (r for r in csv.reader(f, dialect) if r and any(c.strip() for c in r))
            first = next(reader, None)
            if first is None:
                raise NotARecording(f"{path}: empty CSV file")
            first = [c.strip() for c in first]
            header = first if any(_is_text(c) for c in first) else None
            rows = [] if header is not None else [first]
            second = next(reader, None)
            if second is not None:
                text = [k for k, c in enumerate(second) if _is_text(c.strip())]
                time_ok = header is not None and len(text) == 1 and text[0] < len(header) and \
                    _TIME_NAMES.match(header[text[0]]) is not None
                if text and not time_ok:
                    name = header[text[0]] if header is not None and text[0] < len(header) else f"column {text[0] + 1}"
                    raise NotARecording(f"{path}: {name!r} holds {second[text[0]].strip()!r}, not a number")
                rows.append(second)
            rows += list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NotARecording(f"{path}: not a text table ({_one_line(exc)})") from None
    return header, rows


def _is_text(cell: str) -> bool:
    try:
        float(cell)
        return False
    except ValueError:
        return True


def _column(path: Path, rows: list[list[str]], k: int, name: str) -> list[str]:
    try:
        return [r[k].strip() for r in rows]
    except IndexError:
        bad = next(i for i, r in enumerate(rows) if len(r) <= k)
        raise DataError(f"{path}: row {bad + 2} has no value in column {name!r}") from None


def _numbers(path: Path, cells: list[str], name: str) -> np.ndarray:
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        bad = next(c for c in cells if _is_text(c))
        raise NotARecording(f"{path}: column {name!r} holds {bad!r}, not a number") from None


def _time_seconds(path: Path, cells: list[str], name: str) -> np.ndarray:
    """Seconds from the first stamp of a numeric or date-time column (see the module docstring)."""
    if cells and _is_text(cells[0]):
        try:
            stamps = np.asarray(cells, dtype="datetime64[us]").astype(np.int64)
        except ValueError:
            raise DataError(f"{path}: column {name!r} is neither numbers nor ISO date-times") from None
        return (stamps - stamps[0]) / 1e6
    t = _numbers(path, cells, name)
    lower = name.lower()
    if re.search(r"(ms|milli)", lower):
        scale = 1e-3
    elif re.search(r"(_s$|^s$|sec)", lower):
        scale = 1.0
    else:
        steps = np.diff(t)
        scale = 1e-3 if steps.size and float(np.median(steps)) > 1.0 else 1.0
    return (t - t[0]) * scale


def check_regular_times(path: Path | str, t: np.ndarray, column: str = "time") -> float:
    """The rate of regular timestamps ``t`` (seconds), or a one-line DataError (rules: module docstring)."""
    n = t.size
    if n < 2:
        raise DataError(f"{path}: column {column!r} has {n} sample(s); a rate needs two")
    steps = np.diff(t)
    back = np.flatnonzero(steps < 0)
    if back.size:
        i = int(back[0])
        raise DataError(f"{path}: irregular sampling, column {column!r} goes back in time at row {i + 2} "
                        f"({t[i]:.6g} s -> {t[i + 1]:.6g} s)")
    span = float(t[-1] - t[0])
    if span <= 0:
        raise DataError(f"{path}: column {column!r} never advances; cannot infer a rate")
    fs = (n - 1) / span
    longest = int(np.argmax(steps))
    if steps[longest] > CSV_MAX_STEP_PERIODS / fs:
        raise DataError(
            f"{path}: irregular sampling, a gap of {steps[longest]:.6g} s in column {column!r} after row "
            f"{longest + 2} ({steps[longest] * fs:.1f} periods at the mean rate {fs:.6g} Hz)"
        )
    drift = np.abs(t - t[0] - np.arange(n) / fs)
    worst = int(np.argmax(drift))
    limit = max(CSV_MAX_DRIFT_S, CSV_MAX_DRIFT_PERIODS / fs)
    if drift[worst] > limit:
        raise DataError(
            f"{path}: irregular sampling, column {column!r} is {drift[worst]:.3g} s off a uniform "
            f"{fs:.6g} Hz grid at row {worst + 2} (limit {limit:.3g} s)"
        )
    return float(fs)


def _parse_csv(path: Path, fs: float | None) -> _CsvLayout:
    header, rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: CSV file has a header but no rows")
    width = len(header) if header is not None else len(rows[0])
    names = header if header is not None else (
        ["value"] if width == 1 else [f"value{k + 1}" for k in range(width)])
    time_col = next((k for k, c in enumerate(names) if header is not None and _TIME_NAMES.match(c)), None)
    rate_col = next((k for k, c in enumerate(names) if header is not None and _RATE_NAMES.match(c)), None)
    value_cols = [k for k in range(width) if k not in (time_col, rate_col)]
    if not value_cols:
        raise DataError(f"{path}: no value column besides the time / rate columns")
    values = np.stack([_numbers(path, _column(path, rows, k, names[k]), names[k]) for k in value_cols])
    if time_col is not None:
        t = _time_seconds(path, _column(path, rows, time_col, names[time_col]), names[time_col])
        rate = check_regular_times(path, t, names[time_col])
        how = f"rate {rate:.6g} Hz from time column {names[time_col]!r}"
    elif rate_col is not None:
        col = _numbers(path, _column(path, rows, rate_col, names[rate_col]), names[rate_col])
        if not (np.all(col == col[0]) and col[0] > 0):
            raise DataError(f"{path}: sample-rate column {names[rate_col]!r} is not one positive constant")
        rate, how = float(col[0]), f"rate from column {names[rate_col]!r}"
    elif fs is not None and fs > 0:
        rate, how = float(fs), "rate given by the caller"
    else:
        raise NotARecording(f"{path}: no time or sample-rate column; give the rate (fs, e.g. --set data.fs=100)")
    return _CsvLayout(tuple(names[k] for k in value_cols), values, rate, how)


@lru_cache(maxsize=8)
def _csv_values(path: str, stamp: tuple[int, int], fs: float | None) -> _CsvLayout:
    del stamp  # part of the cache key: an edited file is parsed again
    layout = _parse_csv(Path(path), fs)
    layout.values.setflags(write=False)
    return layout


def _file_stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def inspect_csv(path: Path, fs: float | None = None) -> RecordInfo:
    """A CSV recording (rules in the module docstring). ``fs`` is used only when the file has no
    time or sample-rate column; the rate found is stated in ``comments``.

    Raises:
        DataError: no rate can be found, a value is not a number, or the sampling is irregular.
    """
    layout = _csv_values(str(path), _file_stamp(path), fs)
    return RecordInfo(
        path=str(path), name=path.stem, fs=layout.fs, n_frames=int(layout.values.shape[1]),
        channels=layout.names, units=("",) * len(layout.names), samples_per_frame=(1,) * len(layout.names),
        n_segments=1, comments=(layout.how,), format="csv",
        channel_types=tuple(infer_channel_type(c) for c in layout.names),
    )


def read_csv(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Rows ``[start, stop)`` of the parsed columns (the whole file is parsed once per process)."""
    path = Path(info.path)
    given = info.fs if info.comments == ("rate given by the caller",) else None
    try:
        layout = _csv_values(info.path, _file_stamp(path), given)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None
    if layout.values.shape[1] != info.n_frames or layout.names != info.channels:
        raise DataError(f"{path}: changed since it was indexed ({layout.values.shape[1]} rows, "
                        f"index says {info.n_frames}); index again")
    return [np.array(layout.values[r, start:stop]) for r in rows]


# ---------------------------------------------------------------------------------------------- NPZ

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
        raise DataError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None
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
    data, rate, names = _npz_arrays(str(path), _file_stamp(path), fs)
    return RecordInfo(
        path=str(path), name=path.stem, fs=rate, n_frames=int(data.shape[1]), channels=names,
        units=("",) * len(names), samples_per_frame=(1,) * len(names), n_segments=1, comments=(),
        format="npz", channel_types=tuple(infer_channel_type(c) for c in names),
    )


def read_npz(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    """Columns ``[start, stop)`` of the loaded array."""
    data, _, _ = _npz_arrays(info.path, _file_stamp(Path(info.path)), info.fs)
    return [np.array(data[r, start:stop]) for r in rows]


# ------------------------------------------------------------------------------------------ registry


def _read_wfdb(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    from modalities.signals.records import read_wfdb_window

    return read_wfdb_window(info, start, stop, [info.channels[r] for r in rows])


def _inspect_wfdb(path: Path, fs: float | None = None) -> RecordInfo:
    from modalities.signals.records import read_header

    return read_header(path)


READERS: dict[str, FormatReader] = {
    "wfdb": FormatReader("wfdb", (".hea",), _inspect_wfdb, _read_wfdb),
    "edf": FormatReader("edf", (".edf",), inspect_edf, read_edf),
    "bdf": FormatReader("bdf", (".bdf",), inspect_edf, read_edf),
    "fif": FormatReader("fif", (".fif", ".fif.gz"), inspect_mne, read_mne),
    "set": FormatReader("set", (".set",), inspect_mne, read_mne),
    "csv": FormatReader("csv", (".csv", ".tsv"), inspect_csv, read_csv),
    "npz": FormatReader("npz", (".npz",), inspect_npz, read_npz),
}

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
