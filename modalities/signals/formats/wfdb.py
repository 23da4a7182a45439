"""WFDB records: header checks and parsing, stat-only signal-file checks, and window reads.

A WFDB record is a ``<name>.hea`` header plus one or more signal files (``.dat``, ``.mat``, ...)
that interleave the samples of its channels frame by frame. A *frame* holds one sample of each
ordinary channel and ``samples_per_frame`` samples of a multi-frequency channel, so a channel's
own rate is ``fs * samples_per_frame``. Multi-segment records chain single-segment records (with
``~`` for gaps) under a master header; they are indexed as one record.

Nothing here loads a whole record: :func:`read_header` only parses headers and ``stat``s
signal files, and :func:`read_wfdb_window` asks ``wfdb.rdrecord`` for ``[start, stop)`` frames,
which seeks to that byte range.

>>> info = read_header("mitdb/100")                                   # doctest: +SKIP
>>> mlii, = read_wfdb_window(info, 0, 3600, channels=["MLII"])         # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import wfdb

from modalities.base import DataError
from modalities.signals.channels import infer_channel_type
from modalities.signals.formats.base import FormatReader, one_line
from modalities.signals.record import RecordInfo

__all__ = [
    "FORMATS",
    "RECORD_SUFFIXES",
    "inspect_record",
    "read_header",
    "read_wfdb_window",
    "record_path",
    "segment_headers",
]

RECORD_SUFFIXES = (".hea", ".dat", ".mat")

# Storage bits per sample of each WFDB signal format (the signal-file spec, "signal(5)").
# Compressed FLAC formats (508/516/524) have no fixed size and are only checked for existence.
_BITS_PER_SAMPLE = {
    "8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
    "212": 12, "310": Fraction(32, 3), "311": Fraction(32, 3),
}


def record_path(path: str | Path) -> Path:
    """The record path ``wfdb`` expects: absolute, without a ``.hea`` / ``.dat`` / ``.mat`` suffix."""
    p = Path(path).expanduser().absolute()
    if p.suffix.lower() in RECORD_SUFFIXES:
        p = p.with_suffix("")
    return p


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
        raise DataError(f"{hea}: cannot read WFDB header ({exc.strerror or one_line(exc)})") from None
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
        raise DataError(f"{hea}: cannot parse WFDB header ({one_line(exc)})") from None


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
            raise DataError(f"{data}: cannot read signal file ({exc.strerror or one_line(exc)}; referenced by {hea})") from None
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
    return inspect_record(record_path(path))[0]


def inspect_record(record: Path) -> tuple[RecordInfo, list[Path]]:
    """:func:`read_header` plus every other file the record's reads depend on."""
    header = _rdheader(record)
    if isinstance(header, wfdb.MultiRecord):
        return _multi_segment_info(record, header)
    return _single_segment_info(record, header)


def segment_headers(hea: Path) -> list[Path]:
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
            f"{info.path}: cannot read frames [{start}, {stop}) ({one_line(exc)})"
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


def _inspect_wfdb(path: Path, fs: float | None = None) -> RecordInfo:
    del fs  # headers state the rate
    return read_header(path)


def _read_wfdb(info: RecordInfo, start: int, stop: int, rows: Sequence[int]) -> list[np.ndarray]:
    return read_wfdb_window(info, start, stop, [info.channels[r] for r in rows])


FORMATS = (FormatReader("wfdb", (".hea",), _inspect_wfdb, _read_wfdb),)
