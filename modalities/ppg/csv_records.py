"""PPG recordings stored as CSV (the HeartPy example files), converted once into WFDB records.

The shared readers (:mod:`modalities.signals.records`) index and read WFDB records lazily. The HeartPy example
recordings are CSV files in three layouts:

- ``data.csv``: one headerless column of raw ADC values; the rate is not in the file (HeartPy's documentation
  and examples use 100 Hz);
- ``data2.csv``: columns ``timer`` (milliseconds) and ``hr`` (the PPG signal, despite its name);
- ``data3.csv``: columns ``datetime`` (``YYYY-MM-DD HH:MM:SS.ffffff``) and ``hr``.

:func:`read_ppg_csv` parses any of them into a uniformly sampled signal (with a time column, at the mean rate
``(n - 1) / (t_last - t_first)``, as HeartPy does); :func:`csv_to_wfdb` writes it as a one-channel
WFDB record whose channel is named ``PLETH`` (the PhysioNet name for a photoplethysmogram). This module is the PPG
modality's own adapter: where :func:`~modalities.signals.records.index_records` reads a folder directly it is
used as is, and only a folder of CSV files it cannot read is converted (into a cache, never next to the data).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np

from modalities.base import DataError
from modalities.signals.records import RecordInfo, index_records

__all__ = ["HEARTPY_FILES", "csv_to_wfdb", "heartpy_data_dir", "ppg_records", "read_ppg_csv", "HEADERLESS_FS"]

# Rate of a headerless one-column file (HeartPy's data.csv: "sampled at 100 Hz" in the HeartPy examples).
HEADERLESS_FS = 100.0
HEARTPY_FILES = ("data.csv", "data2.csv", "data3.csv")
PPG_CHANNEL = "PLETH"


def heartpy_data_dir() -> Path:
    """The ``data`` folder of the installed ``heartpy`` package (found on disk, never downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec("heartpy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("heartpy: package not installed (pip install heartpy); it carries the default PPG data")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [f for f in HEARTPY_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: heartpy data files missing: {', '.join(missing)}")
    return folder


def _parse_time(column: str, values: list[str], path: Path) -> np.ndarray:
    try:
        if column == "timer":
            return np.array([float(v) for v in values]) / 1000.0
        stamps = [datetime.fromisoformat(v.strip()) for v in values]
    except ValueError as exc:
        raise DataError(f"{path}: column {column!r} holds a value that is not a time ({exc})") from None
    t0 = stamps[0]
    return np.array([(s - t0).total_seconds() for s in stamps])


def read_ppg_csv(path: str | Path, fs: float | None = None) -> tuple[np.ndarray, float]:
    """Read a PPG CSV file -> ``(signal float64[T], fs)``, uniformly sampled.

    Layouts: one headerless numeric column (rate ``fs``, required), or a header with a time
    column ``timer`` (ms) or ``datetime`` plus one signal column (``hr`` in HeartPy's files; any other single
    column name is accepted). With a time column the rate is the mean rate ``(n - 1) / (t_last - t_first)`` and
    the samples are taken as uniformly spaced; ``fs``, when given, overrides the inferred rate.

    Raises:
        DataError: the file is missing, empty, has non-numeric samples, or its time column decreases.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    if len(rows) < 2:
        raise DataError(f"{path}: fewer than 2 samples")
    time_col = next((c for c in ("timer", "datetime") if header and c in header), None)
    signal_cols = [i for i, c in enumerate(header) if c != time_col] if header else list(range(len(rows[0])))
    if len(signal_cols) != 1:
        raise DataError(f"{path}: expected one signal column besides an optional timer/datetime column, "
                        f"found columns {header or len(rows[0])}")
    k = signal_cols[0]
    try:
        x = np.array([float(r[k]) for r in rows], dtype=np.float64)
    except (ValueError, IndexError):
        raise DataError(f"{path}: column {k} holds a non-numeric or missing sample") from None
    if time_col is None:
        if fs is None:
            raise DataError(f"{path}: no timer/datetime column; give the rate with data.csv_fs (HeartPy's data.csv: "
                            f"{HEADERLESS_FS:g})")
        if not fs > 0:
            raise DataError(f"{path}: data.csv_fs must be > 0, got {fs}")
        return x, float(fs)
    t = _parse_time(time_col, [r[header.index(time_col)] for r in rows], path)
    if not (np.all(np.diff(t) >= 0) and t[-1] > t[0]):
        raise DataError(f"{path}: column {time_col!r} decreases or spans no time")
    # Logged time stamps come in bursts (data3.csv repeats a stamp for ~36 % of its samples): the samples are
    # taken as uniformly spaced at the mean rate, as HeartPy's get_samplerate_* functions do.
    rate = float(fs) if fs else round((len(t) - 1) / (t[-1] - t[0]), 3)
    return x, rate


def csv_to_wfdb(path: str | Path, out_dir: str | Path, fs: float | None = None) -> Path:
    """Convert one PPG CSV file into a one-channel WFDB record ``<out_dir>/<stem>`` (channel ``PLETH``, 16-bit).

    Written into a hidden temporary folder and moved, so a concurrent reader never sees half a record. Returns the record
    path without extension.
    """
    import wfdb

    path, out_dir = Path(path), Path(out_dir)
    x, rate = read_ppg_csv(path, fs)
    name = path.stem
    tmp = out_dir / f".tmp_{name}_{os.getpid()}"  # hidden: never indexed while half written
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        wfdb.wrsamp(name, fs=rate, units=["NU"], sig_name=[PPG_CHANNEL], p_signal=x[:, None], fmt=["16"],
                    comments=[f"converted from {path.name} ({'given' if fs else 'inferred'} rate {rate:g} Hz)"],
                    write_dir=str(tmp))
        os.replace(tmp / f"{name}.dat", out_dir / f"{name}.dat")
        os.replace(tmp / f"{name}.hea", out_dir / f"{name}.hea")  # the header last: it makes the record visible
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / name


def _convert_folder(csvs: list[Path], out_dir: Path, csv_fs: float | None) -> Path:
    for f in csvs:
        if not (out_dir / f"{f.stem}.hea").is_file():
            csv_to_wfdb(f, out_dir, csv_fs)
    return out_dir


def _cache_root() -> Path:
    return Path(os.environ.get("MODALITIES_CACHE") or Path.home() / ".cache" / "modalities")


def _index(root: Path, csv_fs: float | None) -> list[RecordInfo]:
    """The shared index, given the rate of CSV files without one where the shared readers take it."""
    import inspect

    if csv_fs is not None and "fs" in inspect.signature(index_records).parameters:
        return index_records(root, fs=csv_fs)
    return index_records(root)


def ppg_records(path: str | Path, cache_dir: str | Path | None = None, csv_fs: float | None = None
                ) -> list[RecordInfo]:
    """Index the records under ``path`` (a folder or one record / CSV file).

    WFDB records (and any format the shared readers index) are read in place. CSV files the shared index cannot
    read are converted once with :func:`csv_to_wfdb` into ``<cache_dir>/ppg_csv/<hash of path>`` (default cache:
    ``$MODALITIES_CACHE`` or ``~/.cache/modalities``) and indexed there, next to any WFDB records of ``path``.
    ``csv_fs`` is the rate of CSV files with no time column (HeartPy's ``data.csv``: 100 Hz).

    Raises:
        DataError: ``path`` does not exist, or holds neither readable records nor CSV files.
    """
    root = Path(path).expanduser().absolute()
    if not root.exists() and not root.with_suffix(".hea").is_file():
        raise DataError(f"{root}: no such folder or record")
    try:
        records = _index(root, csv_fs)
    except DataError as exc:
        records, error = [], exc
    else:
        error = None
    if root.is_file() and root.suffix.lower() == ".csv":
        csvs = [root]
    elif root.is_dir():
        csvs = sorted(p for p in root.rglob("*.csv") if not any(part.startswith(".") for part in p.parts))
    else:
        csvs = []
    if error is not None and (not csvs or (root.is_dir() and any(root.rglob("*.hea")))):
        raise error  # a broken WFDB record is reported, not papered over by the CSV files beside it
    if any(getattr(r, "format", "wfdb") == "csv" for r in records):
        csvs = []  # the shared readers index CSV files themselves
    if csvs:
        digest = hashlib.sha1(f"{root}|{csv_fs}".encode()).hexdigest()[:16]
        out = Path(cache_dir) if cache_dir is not None else _cache_root() / "ppg" / "csv" / digest
        records = records + index_records(_convert_folder(csvs, out, csv_fs))
    if not records:
        raise DataError(f"{root}: no records or CSV files found")
    return sorted(records, key=lambda r: r.path)
