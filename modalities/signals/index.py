"""The corpus index: every recording under a folder, in any format, described by header and cached as JSON.

:func:`index_records` finds every file whose suffix is a supported format (:mod:`modalities.signals.formats`):
WFDB records (``.hea``, :mod:`~modalities.signals.formats.wfdb`), EDF/EDF+/BDF, FIF, EEGLAB ``.set``, CSV and
``.npz`` files; it only parses headers and ``stat``s signal files (no sample is read). Read windows of the
records with :func:`~modalities.signals.resampled.read_window_resampled`.

>>> records = index_records("signals/")                                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

from modalities.base import DataError, data_cache_dir
from modalities.signals.formats import format_of, inspect_file, is_split_continuation, supported_suffixes
from modalities.signals.formats.base import NotARecording
from modalities.signals.formats.wfdb import RECORD_SUFFIXES, inspect_record, read_header, record_path, segment_headers
from modalities.signals.record import RecordInfo

__all__ = ["index_records"]

_INDEX_FILE = "index.json"
_INDEX_VERSION = 3  # 2: every format, RecordInfo.format and .channel_types, skipped files; 3: header checks


def _find_headers(root: Path) -> list[Path]:
    """Every file under ``root`` whose suffix is a supported format (``.hea``, ``.edf``, ``.csv``, ...)."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and format_of(f) is not None]
    return sorted(f for f in found if not (f.suffix.lower() in (".fif", ".gz") and is_split_continuation(f)))


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _cache_file(root: Path, cache_dir: str | Path | None) -> Path:
    """Where the index of the folder ``root`` is kept: never inside ``root`` (see :func:`index_records`)."""
    if cache_dir is not None:
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return Path(cache_dir).expanduser() / f"signals_index_{digest}.json"
    return data_cache_dir("signals", root) / _INDEX_FILE


def _load_cache(
    cache: Path, root: Path, headers: list[Path], fs: float | None
) -> tuple[list[RecordInfo], dict[str, str]] | None:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != _INDEX_VERSION or data.get("root") != str(root.resolve()) or data.get("fs") != fs:
        return None
    files: dict[str, list[int]] = data.get("files", {})
    if sorted(files.get("headers", {})) != sorted(str(h.relative_to(root)) for h in headers):
        return None
    for group in ("headers", "data"):
        for rel, stamp in files.get(group, {}).items():
            if _stat(root / rel) != stamp:
                return None
    out = []
    for rec in data.get("records", []):
        rec = dict(rec)
        rec["path"] = str(root / rec["path"])
        for key in ("channels", "units", "samples_per_frame", "comments", "channel_types"):
            rec[key] = tuple(rec[key])
        out.append(RecordInfo(**rec))
    return out, dict(data.get("skipped", {}))


def _write_cache(
    cache: Path, root: Path, headers: list[Path], records: list[RecordInfo], data_files: list[Path],
    fs: float | None, skipped: dict[str, str],
) -> None:
    payload = {
        "version": _INDEX_VERSION,
        "root": str(root.resolve()),
        "fs": fs,
        "files": {
            "headers": {str(h.relative_to(root)): _stat(h) for h in headers},
            "data": {str(f.relative_to(root)): _stat(f) for f in data_files},
        },
        "records": [
            {**asdict(info), "path": str(Path(info.path).relative_to(root))} for info in records
        ],
        "skipped": skipped,
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the index from other users
        os.replace(tmp, cache)  # atomic: concurrent workers never see half a file
    except OSError:
        pass  # the cache only saves time; an unwritable location is not an error


def _warn_skipped(root: Path, skipped: dict[str, str]) -> None:
    if skipped:
        listed = "; ".join(f"{rel}: {why}" for rel, why in sorted(skipped.items()))
        warnings.warn(f"{root}: {len(skipped)} file(s) are not indexed as recordings: {listed}", stacklevel=3)


def _inspect_any(path: Path, fs: float | None) -> tuple[RecordInfo | None, list[Path]]:
    """A file of any format -> (its RecordInfo or None, the other files its reads depend on)."""
    if path.suffix.lower() == ".hea":
        return inspect_record(path.with_suffix(""))
    info = inspect_file(path, fs)
    extra = [path.with_suffix(".fdt")] if path.suffix.lower() == ".set" and path.with_suffix(".fdt").is_file() else []
    return info, extra


def index_records(
    root: str | Path, cache_dir: str | Path | None = None, fs: float | None = None
) -> list[RecordInfo]:
    """Index every recording under a folder (recursively), or one file; sorted by path.

    Formats: WFDB (``*.hea``), EDF/EDF+/BDF (``*.edf``, ``*.bdf``), FIF (``*.fif``), EEGLAB
    (``*.set`` + ``.fdt``), CSV (``*.csv``, ``*.tsv``; a ``.txt`` column only as a single file) and
    NumPy ``*.npz``; see :mod:`modalities.signals.formats`. EDF+ files that
    hold only annotations (hypnograms) are not recordings and are left out silently (read them with
    :func:`~modalities.signals.annotations.read_annotations`). In a folder, CSV files that are not
    recordings (text cells, or no time column, no rate column and no ``fs``) are left out with one
    warning that lists them (so are ``.npz`` files without a signal array or rate); every other
    unreadable file is an error.

    Segment and layout headers of multi-segment records are part of their master record, and the
    later parts of a split FIF recording part of its first file, not records of their own. Hidden files
    and folders are skipped. Nothing is ever written into ``root`` (clinical archives are often read-only,
    checksummed or under version control): the index of a folder is cached as JSON in ``cache_dir`` when given,
    else in :func:`~modalities.base.data_cache_dir` ``("signals", root)``, i.e.
    ``$MODALITIES_CACHE/signals/<name>-<hash>/index.json`` (default ``~/.cache/modalities/...``), keyed by the
    resolved path so that two folders never share an index. It is rebuilt when any indexed or data file changes
    (mtime or size), a file appears or disappears, or ``fs`` changes; an unwritable cache is not an error.

    Args:
        root: a folder, a WFDB record (any of its files or no suffix) or one file of another format.
        cache_dir: the folder of the JSON index (default: see above).
        fs: sampling rate in Hz of CSV files that state none (one value column, no time column).

    Raises:
        DataError: ``root`` does not exist, is a file of an unknown type, holds only annotations, or
            (a folder) holds no recording; any record fails :func:`~modalities.signals.formats.wfdb.read_header` (missing, truncated or
            inconsistent signal file) or its format's reader (corrupt EDF, irregular CSV timestamps).
    """
    root_path = Path(root).expanduser().absolute()
    if not root_path.is_dir():
        record = record_path(root_path)
        # WFDB record names have no dots: "100", "100.hea", "100.dat"; never "100.edf" beside a 100.hea.
        wfdb_like = root_path.suffix == "" or root_path.suffix.lower() in RECORD_SUFFIXES
        if wfdb_like and record.with_suffix(".hea").is_file():
            return [read_header(record)]
        if not root_path.exists():
            raise DataError(f"{root_path}: no such folder or file")
        if format_of(root_path, single_file=True) is None:
            raise DataError(f"{root_path}: unknown file type {''.join(root_path.suffixes) or '(no suffix)'!r}; "
                            f"supported: {', '.join(supported_suffixes())}")
        info, _ = _inspect_any(root_path, fs)
        if info is None:
            raise DataError(f"{root_path}: holds annotations only, no signal (read it with read_annotations)")
        return [info]

    headers = _find_headers(root_path)
    if not headers:
        raise DataError(f"{root_path}: no recordings found ({', '.join(supported_suffixes())})")
    cache = _cache_file(root_path, cache_dir)
    cached = _load_cache(cache, root_path, headers, fs)
    if cached is not None:
        _warn_skipped(root_path, cached[1])
        return cached[0]

    parts: set[Path] = set()
    for hea in headers:
        if hea.suffix.lower() == ".hea":
            parts.update(segment_headers(hea))
    records: list[RecordInfo] = []
    data_files: set[Path] = set()
    skipped: dict[str, str] = {}
    for path in headers:
        if path in parts:
            continue
        try:
            info, files = _inspect_any(path, fs)
        except NotARecording as exc:
            skipped[str(path.relative_to(root_path))] = str(exc).split(": ", 1)[-1]
            continue
        if info is not None:
            records.append(info)
        data_files.update(f for f in files if f.suffix != ".hea")
    if not records:
        why = f"; skipped {'; '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))}" if skipped else ""
        raise DataError(f"{root_path}: no recordings found ({', '.join(supported_suffixes())}){why}")
    records.sort(key=lambda info: info.path)
    _write_cache(cache, root_path, headers, records, sorted(data_files), fs, skipped)
    _warn_skipped(root_path, skipped)
    return records
