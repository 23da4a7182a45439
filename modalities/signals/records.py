"""Signal records: WFDB header parsing, a cached index of a corpus in any format, and lazy window reads.

:func:`index_records` finds every recording under a folder: WFDB records (``.hea``, parsed here) and
EDF/EDF+/BDF, FIF, EEGLAB ``.set``, CSV and ``.npz`` files (inspected by :mod:`modalities.signals.readers`);
:func:`read_window_resampled` reads a window of any of them (dispatch on :attr:`RecordInfo.format`).
The rest of this docstring is about WFDB.

A WFDB record is a ``<name>.hea`` header plus one or more signal files (``.dat``, ``.mat``, ...)
that interleave the samples of its channels frame by frame. A *frame* holds one sample of each
ordinary channel and ``samples_per_frame`` samples of a multi-frequency channel, so a channel's
own rate is ``fs * samples_per_frame``. Multi-segment records chain single-segment records (with
``~`` for gaps) under a master header; they are indexed as one record.

Nothing here loads a whole record: :func:`index_records` only parses headers and ``stat``s
signal files, and :func:`read_wfdb_window` asks ``wfdb.rdrecord`` for ``[start, stop)`` frames,
which seeks to that byte range.

>>> info = read_header("mitdb/100")                                   # doctest: +SKIP
>>> mlii, = read_wfdb_window(info, 0, 3600, channels=["MLII"])         # doctest: +SKIP
>>> x = read_window_resampled(info, 10.0, 10.0, ["MLII", "V5"], 500.0)  # float32[2, 5000]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import wfdb

from modalities.base import DataError, data_cache_dir
from modalities.signals.filters import rational_ratio, resample

__all__ = [
    "RecordInfo",
    "index_records",
    "read_header",
    "read_wfdb_window",
    "read_window_resampled",
]

_RECORD_SUFFIXES = (".hea", ".dat", ".mat")
_INDEX_FILE = "index.json"
_INDEX_VERSION = 3  # 2: every format, RecordInfo.format and .channel_types, skipped files; 3: header checks

# Storage bits per sample of each WFDB signal format (the signal-file spec, "signal(5)").
# Compressed FLAC formats (508/516/524) have no fixed size and are only checked for existence.
_BITS_PER_SAMPLE = {
    "8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
    "212": 12, "310": Fraction(32, 3), "311": Fraction(32, 3),
}


@dataclass(frozen=True)
class RecordInfo:
    """What the header of one WFDB record says; enough to plan window reads without opening data.

    Args:
        path: absolute record path without extension, as ``wfdb`` expects it.
        name: record name from the header (``"100"``).
        fs: frame (base) frequency in Hz.
        n_frames: record length in frames.
        channels: channel (signal) names in file order.
        units: physical unit of each channel.
        samples_per_frame: samples of each channel per frame (1 for ordinary channels).
        n_segments: 1 for single-segment records, else the number of segments (layout included).
        comments: header comment lines without the leading ``#`` (other formats: what the reader
            inferred, e.g. the evidence for a CSV rate).
        format: ``"wfdb"``, ``"edf"``, ``"bdf"``, ``"fif"``, ``"set"``, ``"csv"`` or ``"npz"``; ``path`` keeps its
            suffix for every format but WFDB.
        channel_types: per channel one of ``"ecg"``, ``"ppg"``, ``"eeg"``, ``"eog"``, ``"emg"``,
            ``"resp"``, ``"stim"``, ``"misc"``: from the file where it says (FIF), else inferred from
            names (:func:`~modalities.signals.channels.infer_channel_type`).
    """

    path: str
    name: str
    fs: float
    n_frames: int
    channels: tuple[str, ...]
    units: tuple[str, ...]
    samples_per_frame: tuple[int, ...]
    n_segments: int
    comments: tuple[str, ...]
    format: str = "wfdb"
    channel_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Every reader checks its format's rate; this is the last line of defence (a hand-built or stale record).
        try:
            rate_ok = math.isfinite(float(self.fs)) and float(self.fs) > 0
        except (TypeError, ValueError):
            rate_ok = False
        if not rate_ok:
            raise DataError(f"{self.path}: sampling frequency {self.fs!r} is not a positive number")
        if self.n_frames < 0:
            raise DataError(f"{self.path}: record length {self.n_frames} frames is negative")

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fs

    def channel_fs(self, channel: str) -> float:
        """Sampling rate of ``channel`` in Hz: ``fs * samples_per_frame``."""
        return self.fs * self.samples_per_frame[self._channel_index(channel)]

    def _channel_index(self, channel: str) -> int:
        try:
            return self.channels.index(channel)
        except ValueError:
            raise DataError(
                f"{self.path}: no channel {channel!r}; the record has {', '.join(self.channels)}"
            ) from None


# ----------------------------------------------------------------------------------------- headers


def _record_path(path: str | Path) -> Path:
    p = Path(path).expanduser().absolute()
    if p.suffix.lower() in _RECORD_SUFFIXES:
        p = p.with_suffix("")
    return p


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# WFDB signal formats (signal(5)); 0 is the null signal of variable-layout headers.
_WFDB_FORMATS = frozenset({"0", "8", "16", "24", "32", "61", "80", "160", "212", "310", "311", "508", "516", "524"})
_FMT_TOKEN = re.compile(r"(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?")
_GAIN_TOKEN = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\(-?\d+\))?(?:/\S*)?")
_RATE_TOKEN = re.compile(r"(?P<fs>[^/()]+)(?:/(?P<counter>[^/()]*))?(?:\((?P<base>[^()]*)\))?")
_DECIMAL = re.compile(r"\d+\.?\d*|\.\d+")  # what wfdb's header grammar reads as a frequency


def _positive(text: str | None) -> bool:
    """A positive number in plain decimal notation (``360``, ``128.5``): wfdb's grammar drops anything else."""
    return text is not None and _DECIMAL.fullmatch(text) is not None and float(text) > 0


def _check_header_text(hea: Path) -> None:
    """Check what ``wfdb.rdheader`` parses leniently (a field it cannot match is silently dropped: a sampling
    frequency of ``-360`` becomes the default 250 Hz, a signal count that disagrees with the signal lines is read
    as given); every problem is a one-line :class:`DataError` naming ``hea``.

    Checked: a record line with a name and a signal count; a sampling frequency (and counter frequency) that is a
    positive finite number; a record length that is a whole number; as many signal (or segment) lines as the record
    line declares; for each signal line a known format, at least one sample per frame and a numeric gain."""
    try:
        text = hea.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(f"{hea}: cannot read WFDB header ({exc.strerror or _one_line(exc)})") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"{hea}: empty WFDB header (no record line)")
    record_line, body = lines[0], lines[1:]
    tokens = record_line.split()
    name = re.fullmatch(r"[-\w]+(?:/(?P<n_seg>\d+))?", tokens[0])
    if name is None or len(tokens) < 2 or not tokens[1].isdigit():
        raise DataError(f"{hea}: record line {record_line!r} is not '<name>[/<segments>] <signals> [<fs> [<length>]]'")
    n_sig, n_seg = int(tokens[1]), name.group("n_seg")
    if len(tokens) > 2:
        rate = _RATE_TOKEN.fullmatch(tokens[2])
        if rate is None or not _positive(rate.group("fs")):
            raise DataError(f"{hea}: sampling frequency {tokens[2]!r} is not a positive number "
                            f"(record line {record_line!r})")
        if rate.group("counter") and not _positive(rate.group("counter")):
            raise DataError(f"{hea}: counter frequency {tokens[2]!r} is not a positive number "
                            f"(record line {record_line!r})")
    if len(tokens) > 3 and not tokens[3].isdigit():
        raise DataError(f"{hea}: record length {tokens[3]!r} is not a whole number of frames "
                        f"(record line {record_line!r})")
    if n_seg is not None:
        if len(body) != int(n_seg):
            raise DataError(f"{hea}: record line declares {int(n_seg)} segment(s) but {len(body)} segment line(s) "
                            "follow")
        for line in body:
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{hea}: segment line {line!r} is not '<segment> <length>'")
        return
    if len(body) != n_sig:
        raise DataError(f"{hea}: record line declares {n_sig} signal(s) but {len(body)} signal line(s) follow")
    for line in body:
        parts = line.split()
        fmt = _FMT_TOKEN.fullmatch(parts[1]) if len(parts) > 1 else None
        if fmt is None:
            raise DataError(f"{hea}: signal line {line!r} has no '<file> <format>'")
        if fmt.group("fmt") not in _WFDB_FORMATS:
            raise DataError(f"{hea}: signal format {fmt.group('fmt')} is not a WFDB format "
                            f"({', '.join(sorted(_WFDB_FORMATS, key=int))}) in signal line {line!r}")
        if fmt.group("spf") is not None and int(fmt.group("spf")) < 1:
            raise DataError(f"{hea}: {parts[1]!r} declares {fmt.group('spf')} samples per frame in signal line "
                            f"{line!r}; at least 1")
        if len(parts) > 2 and _GAIN_TOKEN.fullmatch(parts[2]) is None:
            raise DataError(f"{hea}: gain {parts[2]!r} is not '<gain>[(<baseline>)][/<units>]' in signal line "
                            f"{line!r}")


def _rdheader(record: Path) -> Any:
    hea = record.with_suffix(".hea")
    if not hea.is_file():
        raise DataError(f"{hea}: WFDB header not found")
    _check_header_text(hea)
    try:
        return wfdb.rdheader(str(record))
    except Exception as exc:  # wfdb raises bare ValueError/IndexError/... on malformed headers
        raise DataError(f"{hea}: cannot parse WFDB header ({_one_line(exc)})") from None


def _signal_file_sizes(record: Path, header: Any, n_frames: int | None) -> tuple[int, list[Path]]:
    """Check that every signal file exists and holds exactly what the header declares (stat only).

    Returns the record length in frames (inferred from the file size when the header omits it)
    and the signal files.
    """
    hea = record.with_suffix(".hea")
    files: dict[str, list[int]] = {}
    for ch, file_name in enumerate(header.file_name or []):
        if file_name and file_name != "~":
            files.setdefault(file_name, []).append(ch)
    for file_name, chans in files.items():
        data = record.parent / file_name
        try:
            st = data.stat()
        except FileNotFoundError:
            raise DataError(f"{data}: signal file missing (referenced by {hea})") from None
        except OSError as exc:
            raise DataError(f"{data}: cannot read signal file ({exc.strerror or _one_line(exc)}; referenced by {hea})") from None
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{data}: not a regular file (signal file referenced by {hea})")
        size = st.st_size
        fmts = {header.fmt[ch] for ch in chans}
        if not fmts <= set(_BITS_PER_SAMPLE):
            continue  # compressed or unknown format: wfdb validates while reading
        offset = int((header.byte_offset or [None] * header.n_sig)[chans[0]] or 0)
        spf = header.samps_per_frame or [1] * header.n_sig
        frame_bits = sum(_BITS_PER_SAMPLE[header.fmt[ch]] * int(spf[ch] or 1) for ch in chans)
        if n_frames is None:
            n_frames = int((size - offset) * 8 // frame_bits)
        need = offset + math.ceil(n_frames * frame_bits / 8)
        # A file may end in a few padding bytes (odd sample counts in 212/310), never a whole frame more.
        slack = max(math.ceil(frame_bits / 8), 4)
        fmt = "/".join(sorted(fmts))
        if size < need:
            raise DataError(
                f"{data}: truncated, holds {size} bytes but {hea} declares {n_frames} frames "
                f"of format {fmt} ({need} bytes)"
            )
        if size >= need + slack:
            raise DataError(
                f"{data}: holds {size} bytes but {hea} declares {n_frames} frames of format {fmt} "
                f"({need} bytes); the header's length or format disagrees with the file"
            )
    return int(n_frames or 0), [record.parent / f for f in files]


def _single_segment_info(record: Path, header: Any) -> tuple[RecordInfo, list[Path]]:
    n_frames, files = _signal_file_sizes(record, header, header.sig_len)
    return _record_info(record, header, header, n_frames, 1), files


def _record_info(record: Path, header: Any, channels: Any, n_frames: int, n_segments: int) -> RecordInfo:
    """A :class:`RecordInfo` from the record's header (name, rate, comments) and the header that describes
    its channels (the record itself, or a multi-segment record's layout / first segment)."""
    from modalities.signals.channels import infer_channel_type

    n = int(channels.n_sig or 0)
    spf = channels.samps_per_frame or [1] * n
    units = channels.units or ["mV"] * n
    names = [str(c) for c in (channels.sig_name or [])]
    return RecordInfo(
        path=str(record),
        name=str(header.record_name),
        fs=float(header.fs),
        n_frames=n_frames,
        channels=tuple(names),
        units=tuple(str(u or "mV") for u in units),
        samples_per_frame=tuple(int(s or 1) for s in spf),
        n_segments=n_segments,
        comments=tuple(header.comments or ()),
        format="wfdb",
        channel_types=tuple(infer_channel_type(c, str(u or "")) for c, u in zip(names, units)),
    )


def _multi_segment_info(record: Path, header: Any) -> tuple[RecordInfo, list[Path]]:
    hea = record.with_suffix(".hea")
    seg_names = list(header.seg_name)
    seg_lens = [int(n) for n in header.seg_len]
    if header.sig_len is not None and int(header.sig_len) != sum(seg_lens):
        raise DataError(
            f"{hea}: declares {header.sig_len} frames but its segments add up to {sum(seg_lens)}"
        )
    reference = None
    files: list[Path] = []
    for i, (seg, seg_len) in enumerate(zip(seg_names, seg_lens)):
        if seg == "~":
            continue
        seg_path = record.parent / seg
        seg_header = _rdheader(seg_path)
        files.append(seg_path.with_suffix(".hea"))
        if seg_header.fs is not None and header.fs is not None and float(seg_header.fs) != float(header.fs):
            raise DataError(f"{seg_path.with_suffix('.hea')}: segment sampled at {float(seg_header.fs):g} Hz but "
                            f"{hea} declares {float(header.fs):g} Hz")
        if i == 0 and header.layout == "variable":
            reference = seg_header  # the layout header: names and rates of every channel
            continue
        seg_info, seg_files = _single_segment_info(seg_path, seg_header)
        files += seg_files
        if seg_info.n_frames != seg_len:
            raise DataError(
                f"{seg_path.with_suffix('.hea')}: segment has {seg_info.n_frames} frames but "
                f"{hea} lists {seg_len}"
            )
        if reference is None:
            reference = seg_header
    if reference is None:
        raise DataError(f"{hea}: multi-segment record has no non-empty segment")
    return _record_info(record, header, reference, sum(seg_lens), len(seg_names)), files


def read_header(path: str | Path) -> RecordInfo:
    """Parse the header of one record and check its signal files by size (no sample is read).

    Args:
        path: record path with or without extension (``.hea``, ``.dat`` or ``.mat``).

    Raises:
        DataError: the header is missing or malformed, a signal file is missing, or a signal file's
            size disagrees with the length and format the header declares.
    """
    return _inspect(_record_path(path))[0]


def _inspect(record: Path) -> tuple[RecordInfo, list[Path]]:
    """:func:`read_header` plus every other file the record's reads depend on."""
    header = _rdheader(record)
    if isinstance(header, wfdb.MultiRecord):
        return _multi_segment_info(record, header)
    return _single_segment_info(record, header)


# ------------------------------------------------------------------------------------------- index


def _segment_headers(hea: Path) -> list[Path]:
    """Headers a multi-segment master header refers to (layout included); [] for other headers."""
    try:
        with open(hea, encoding="latin-1") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    first = line.split()[0]
                    break
            else:
                return []
    except OSError:
        return []
    if "/" not in first:
        return []
    header = _rdheader(hea.with_suffix(""))
    return [hea.parent / f"{seg}.hea" for seg in header.seg_name if seg != "~"]


def _find_headers(root: Path) -> list[Path]:
    """Every file under ``root`` whose suffix is a supported format (``.hea``, ``.edf``, ``.csv``, ...)."""
    from modalities.signals.readers import format_of, is_split_continuation

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
    from modalities.signals.readers import inspect_file

    if path.suffix.lower() == ".hea":
        return _inspect(path.with_suffix(""))
    info = inspect_file(path, fs)
    extra = [path.with_suffix(".fdt")] if path.suffix.lower() == ".set" and path.with_suffix(".fdt").is_file() else []
    return info, extra


def index_records(
    root: str | Path, cache_dir: str | Path | None = None, fs: float | None = None
) -> list[RecordInfo]:
    """Index every recording under a folder (recursively), or one file; sorted by path.

    Formats: WFDB (``*.hea``), EDF/EDF+/BDF (``*.edf``, ``*.bdf``), FIF (``*.fif``), EEGLAB
    (``*.set`` + ``.fdt``), CSV (``*.csv``, ``*.tsv``; a ``.txt`` column only as a single file) and
    NumPy ``*.npz``; see :mod:`modalities.signals.readers`. EDF+ files that
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
            (a folder) holds no recording; any record fails :func:`read_header` (missing, truncated or
            inconsistent signal file) or its format's reader (corrupt EDF, irregular CSV timestamps).
    """
    from modalities.signals.readers import NotARecording, format_of, supported_suffixes

    root_path = Path(root).expanduser().absolute()
    if not root_path.is_dir():
        record = _record_path(root_path)
        # WFDB record names have no dots: "100", "100.hea", "100.dat"; never "100.edf" beside a 100.hea.
        wfdb_like = root_path.suffix == "" or root_path.suffix.lower() in _RECORD_SUFFIXES
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
            parts.update(_segment_headers(hea))
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


# ------------------------------------------------------------------------------------------- reads


def read_wfdb_window(
    info: RecordInfo, start: int, stop: int, channels: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Read frames ``[start, stop)`` of some channels, in physical units, without the rest.

    Returns one float64 array per requested channel (default: all, in record order), each at the
    channel's own rate: length ``(stop - start) * samples_per_frame``. WFDB missing samples and
    gaps between segments are NaN.

    Raises:
        DataError: unknown channel, a window outside ``[0, n_frames]`` or empty, or unreadable data.
    """
    names = list(info.channels) if channels is None else list(channels)
    idx = [info._channel_index(c) for c in names]
    start, stop = int(start), int(stop)
    if not 0 <= start < stop <= info.n_frames:
        raise DataError(
            f"{info.path}: window [{start}, {stop}) frames is outside the record's "
            f"[0, {info.n_frames}) or empty"
        )
    if not idx:
        return []
    unique = sorted(set(idx))
    try:
        rec = wfdb.rdrecord(
            info.path, sampfrom=start, sampto=stop, channels=unique, smooth_frames=False
        )
    except Exception as exc:  # wfdb's own errors carry no file name
        raise DataError(
            f"{info.path}: cannot read frames [{start}, {stop}) ({_one_line(exc)})"
        ) from None
    signals = rec.e_p_signal
    by_index = {ch: np.asarray(signals[k], dtype=np.float64) for k, ch in enumerate(unique)}
    out = []
    for name, ch in zip(names, idx):
        x = by_index[ch]
        want = (stop - start) * info.samples_per_frame[ch]
        if x.shape != (want,):
            raise DataError(
                f"{info.path}: channel {name!r} returned {x.shape[0]} samples for frames "
                f"[{start}, {stop}), expected {want}"
            )
        out.append(x)
    return out


def read_window_resampled(
    info: RecordInfo, start_s: float, duration_s: float, channels: Sequence[str], fs_out: float
) -> np.ndarray:
    """Read ``duration_s`` seconds from ``start_s`` and resample every channel to ``fs_out``.

    Works for every format (:func:`~modalities.signals.readers.read_frames` dispatches on
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
    from modalities.signals.readers import read_frames

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
