"""Annotations as time spans: EDF+ annotations, hypnograms, FIF/EEGLAB annotations, stim channels, WFDB.

Every source becomes a list of :class:`Span` (onset and duration in seconds from the record's first
sample, a label) sorted by onset; overlapping spans are kept as they are (motor-imagery runs
overlap rest and task markers, scorers overlap arousals with stages).

Sleep stage labels are normalised to AASM names (:func:`sleep_stage`): ``"Sleep stage W"`` -> ``"W"``,
Rechtschaffen & Kales ``"Sleep stage 1"`` -> ``"N1"``, ``"3"`` and ``"4"`` -> ``"N3"`` (AASM merged
them), ``"R"`` -> ``"R"``, ``"?"`` -> ``"?"``, ``"Movement time"`` -> ``"MT"``. An EDF+ label's
``@@<signal>`` suffix (the annotation belongs to that signal, e.g. ``"Lights off@@EEG F4-A1"``) goes to
:attr:`Span.channel`.

>>> spans = read_annotations("sleep/SC4001EC-Hypnogram.edf")        # doctest: +SKIP
>>> spans[0]                                                           # doctest: +SKIP
Span(onset_s=0.0, duration_s=30630.0, label='W', channel='')
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.formats import format_of, read_frames, supported_suffixes
from modalities.signals.formats.base import one_line
from modalities.signals.formats.edf import edf_refusal, open_pyedflib
from modalities.signals.formats.mne import OPEN_RAWS
from modalities.signals.record import RecordInfo

__all__ = ["BDF_TRIGGER_MASK", "Span", "read_annotations", "sleep_stage", "spans_from_stim", "stim_spans"]


@dataclass(frozen=True)
class Span:
    """One annotation.

    Args:
        onset_s: start in seconds from the record's first sample.
        duration_s: length in seconds (0 for an instant event).
        label: the annotation text (sleep stages normalised, see :func:`sleep_stage`).
        channel: the signal it belongs to, where the file says (EDF+ ``@@`` labels, FIF channel
            annotations, the stim channel a span came from); ``""`` for the whole record.
    """

    onset_s: float
    duration_s: float
    label: str
    channel: str = ""

    @property
    def end_s(self) -> float:
        return self.onset_s + self.duration_s


_STAGES = {"W": "W", "WAKE": "W", "1": "N1", "N1": "N1", "S1": "N1", "2": "N2", "N2": "N2", "S2": "N2",
           "3": "N3", "N3": "N3", "S3": "N3", "4": "N3", "S4": "N3", "R": "R", "REM": "R", "?": "?"}
_STAGE_LABEL = re.compile(r"^\s*sleep\s+stage\s+(\S+)\s*$", re.I)


def sleep_stage(label: str) -> str | None:
    """The AASM stage of a scoring label (``"W"``, ``"N1"``, ``"N2"``, ``"N3"``, ``"R"``, ``"?"``,
    ``"MT"``), or None when ``label`` is not a stage. ``"Sleep stage 4"`` -> ``"N3"``."""
    text = label.strip()
    if text.lower() == "movement time":
        return "MT"
    m = _STAGE_LABEL.match(text)
    if m is None:
        return None
    return _STAGES.get(m.group(1).upper(), None)


def _span(onset: float, duration: float, text: str, channel: str = "") -> Span:
    label, _, where = str(text).partition("@@")
    label = label.strip()
    stage = sleep_stage(label)
    duration = float(duration) if np.isfinite(duration) and duration > 0 else 0.0
    return Span(float(onset), duration, stage if stage is not None else label, where.strip() or channel)


def _edf_spans(path: Path) -> list[Span]:
    """EDF+/BDF+ annotations through pyedflib (mne where pyedflib refuses the file)."""
    try:
        reader = open_pyedflib(str(path), annotations=True)
    except (OSError, ValueError) as exc:
        reason = edf_refusal(path, exc)
        if "discontinuous" in reason.lower():  # EDF+D: mne reads it (onsets in file time)
            return _mne_file_spans(path, refused=reason)
        # mne.read_annotations returns nothing, silently, for a broken file: not a fallback here.
        raise DataError(f"{path}: not a readable EDF+ file ({reason})") from None
    try:
        onsets, durations, texts = reader.readAnnotations()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read EDF+ annotations ({one_line(exc)})") from None
    finally:
        reader.close()
    return [_span(o, d, t) for o, d, t in zip(onsets, durations, texts)]


def _mne_file_spans(path: Path, refused: str = "") -> list[Span]:
    import mne

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ann = mne.read_annotations(str(path))
    except Exception as exc:
        because = f"{refused}; mne: " if refused else ""
        raise DataError(f"{path}: cannot read annotations ({because}{one_line(exc)})") from None
    return _from_mne(ann, 0.0)


def _from_mne(ann: object, first_time: float) -> list[Span]:
    ch_names = getattr(ann, "ch_names", None)
    out = []
    for k, (o, d, t) in enumerate(zip(ann.onset, ann.duration, ann.description)):  # type: ignore[attr-defined]
        chans = ",".join(ch_names[k]) if ch_names is not None and len(ch_names[k]) else ""
        out.append(_span(float(o) - first_time, float(d), str(t), chans))
    return out


def _raw_spans(path: Path) -> list[Span]:
    """Annotations of a FIF / EEGLAB file, relative to its first sample (``raw.first_time``)."""
    try:
        raw = OPEN_RAWS.get(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None
    ann = raw.annotations
    # With a measurement date, mne counts onsets from it and the data start at first_time.
    first_time = float(raw.first_time) if ann.orig_time is not None else 0.0
    return _from_mne(ann, first_time)


def _wfdb_spans(path: Path, extension: str) -> list[Span]:
    import wfdb

    record = str(path.with_suffix(""))
    try:
        ann = wfdb.rdann(record, extension)
        fs = ann.fs or wfdb.rdheader(record).fs
    except Exception as exc:
        raise DataError(f"{path}: cannot read WFDB annotations ({one_line(exc)})") from None
    if not fs:
        raise DataError(f"{path}: WFDB annotations without a sampling rate (no header beside them)")
    symbols = ann.symbol or [""] * len(ann.sample)
    notes = ann.aux_note or [""] * len(ann.sample)
    out = []
    for sample, symbol, note in zip(ann.sample, symbols, notes):
        note = str(note).replace("\x00", "").strip()  # rhythm changes: "+" with "(AFIB"
        out.append(Span(float(sample) / float(fs), 0.0, f"{symbol} {note}" if note else str(symbol)))
    return out


def spans_from_stim(values: np.ndarray, fs: float, channel: str = "") -> list[Span]:
    """Runs of a constant non-zero value of a stim (trigger) channel as spans labelled by the value.

    ``values`` float[T] at ``fs`` Hz; a run ``values[i:j] == v != 0`` (maximal) gives
    ``Span(i / fs, (j - i) / fs, str(v))`` with integer values written without a decimal point.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return []
    change = np.flatnonzero(np.diff(x) != 0) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [x.size]])
    out = []
    for i, j in zip(starts, stops):
        v = x[i]
        if v == 0 or not np.isfinite(v):
            continue
        label = str(int(v)) if float(v).is_integer() else f"{v:g}"
        out.append(Span(float(i) / fs, float(j - i) / fs, label, channel))
    return out


# BioSemi's Status channel carries the trigger code in its low 16 bits; the bits above are device
# status (CMS in range, battery, speed mode) and change independently of events.
BDF_TRIGGER_MASK = 0xFFFF


def stim_spans(info: RecordInfo, channels: Sequence[str] | None = None, mask: int | None = None) -> list[Span]:
    """Spans of the record's stim channels (default: every channel of type ``"stim"``).

    The whole channel is read (one channel, at its own rate): events need every sample. Values are
    ANDed with ``mask`` as integers when given; a BDF ``Status`` channel defaults to
    :data:`BDF_TRIGGER_MASK` (the trigger bits).
    """
    names = list(channels) if channels is not None else [
        c for c, k in zip(info.channels, info.channel_types) if k == "stim"]
    out: list[Span] = []
    for name in names:
        (x,) = read_frames(info, 0, info.n_frames, [name])
        bits = mask if mask is not None else (
            BDF_TRIGGER_MASK if info.format == "bdf" and name.strip().lower() == "status" else None)
        if bits is not None:
            x = (np.round(np.nan_to_num(x)).astype(np.int64) & int(bits)).astype(np.float64)
        out += spans_from_stim(x, info.channel_fs(name), name)
    return out


def read_annotations(path_or_info: str | Path | RecordInfo, stim: bool = True) -> list[Span]:
    """Every annotation of a file or record, as spans sorted by onset (ties keep file order).

    Sources by format: EDF+/BDF+ annotation signals (pyedflib; also annotation-only files such as
    hypnograms), FIF and EEGLAB annotations (mne), WFDB annotation files (``.atr`` and other
    annotator suffixes, given as the path; a WFDB :class:`RecordInfo` reads ``<record>.atr`` when it
    exists), and, with ``stim`` and a :class:`RecordInfo`, stim channels (:func:`stim_spans`). CSV
    files carry no annotations (``[]``).

    Raises:
        DataError: the file is missing, unreadable, or of an unknown type.
    """
    info = path_or_info if isinstance(path_or_info, RecordInfo) else None
    path = Path(info.path if info is not None else path_or_info).expanduser().absolute()  # type: ignore[arg-type]
    fmt = info.format if info is not None else format_of(path)
    if fmt == "wfdb" or (fmt is None and path.suffix.lower() in (".atr", ".ann", ".qrs", ".ecg", ".arou")):
        if info is not None or path.suffix.lower() == ".hea":
            atr = path.with_suffix(".atr") if info is None else Path(info.path + ".atr")
            spans = _wfdb_spans(atr, "atr") if atr.is_file() else []
        else:
            if not path.is_file():
                raise DataError(f"{path}: no such file")
            spans = _wfdb_spans(path, path.suffix[1:])
    elif fmt is None:
        raise DataError(f"{path}: unknown annotation file type {path.suffix or '(no suffix)'!r}; supported: "
                        f"{', '.join(supported_suffixes())}, .atr")
    elif not path.is_file():
        raise DataError(f"{path}: no such file")
    elif fmt in ("edf", "bdf"):
        if info is not None and info.comments and any(c.startswith("read by mne") for c in info.comments):
            spans = _mne_file_spans(path)
        else:
            spans = _edf_spans(path)
    elif fmt in ("fif", "set"):
        spans = _raw_spans(path)
    else:
        spans = []
    if stim and info is not None and "stim" in info.channel_types:
        spans += stim_spans(info)
    return sorted(spans, key=lambda s: s.onset_s)
