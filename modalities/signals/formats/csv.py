"""CSV / TSV recordings: one column per channel, a header row optional, parsed once per process.

Format ``csv``: ``.csv``, ``.tsv``; ``.txt`` too, but only as a single file (folder scans skip ``.txt``).
Text has no random access, so a file is parsed once per process, then sliced.

The rate comes from, in this order:
a time column (``time``/``timer``/``t``/``timestamp``/``*_ms``/``*_s``, numbers; or
``datetime``/``date``/``timestamp`` holding ISO date-times), a sample-rate column (``fs``,
``sample_rate``, ``sampling_rate``, ``srate``, ``sf``: a constant), or the ``fs`` argument (a
file with no time, such as heartpy's ``data.csv``, needs it). Numeric time columns named ``*ms*``
or ``millis*`` are milliseconds, ``*_s``/``sec*``/``seconds`` seconds; a bare ``time``/``timer``/``t``
is milliseconds when its median step exceeds 1 (the rate would otherwise be below 1 Hz), else seconds.

Timestamps must be regular (:func:`check_regular_times`). With ``n`` samples at times ``t_0 .. t_{n-1}``
the rate is ``fs = (n - 1) / (t_{n-1} - t_0)`` and the file is accepted when

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
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.formats.base import FormatReader, NotARecording, file_stamp, one_line
from modalities.signals.record import RecordInfo

__all__ = [
    "CSV_MAX_DRIFT_PERIODS",
    "CSV_MAX_DRIFT_S",
    "CSV_MAX_STEP_PERIODS",
    "FORMATS",
    "check_regular_times",
    "inspect_csv",
    "read_csv",
]

CSV_MAX_STEP_PERIODS = 10.0
CSV_MAX_DRIFT_S = 0.5
CSV_MAX_DRIFT_PERIODS = 50.0

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
        raise NotARecording(f"{path}: not a text table ({one_line(exc)})") from None
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


def inspect_csv(path: Path, fs: float | None = None) -> RecordInfo:
    """A CSV recording (rules in the module docstring). ``fs`` is used only when the file has no
    time or sample-rate column; the rate found is stated in ``comments``.

    Raises:
        DataError: no rate can be found, a value is not a number, or the sampling is irregular.
    """
    layout = _csv_values(str(path), file_stamp(path), fs)
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
        layout = _csv_values(info.path, file_stamp(path), given)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None
    if layout.values.shape[1] != info.n_frames or layout.names != info.channels:
        raise DataError(f"{path}: changed since it was indexed ({layout.values.shape[1]} rows, "
                        f"index says {info.n_frames}); index again")
    return [np.array(layout.values[r, start:stop]) for r in rows]


FORMATS = (FormatReader("csv", (".csv", ".tsv"), inspect_csv, read_csv),)
