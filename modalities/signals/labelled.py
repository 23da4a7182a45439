"""Labelled signal windows for fine-tuning: labels from annotations or from a per-record table, subject-wise splits.

Label sources, in the formats datasets ship:

- ``labels: events``: the records' own annotations (:func:`~modalities.signals.annotations.read_annotations`: EDF+
  events, WFDB ``.atr`` beats, hypnogram stages, stim channels). ``targets`` name the classes, each one annotation
  label or several joined by ``+`` (``["T0", "T1+T2"]``: rest vs movement; ``["N", "A"]``: normal vs atrial
  premature beats). An instant annotation (a beat) gets a window centred on it, a span (an event, a sleep epoch)
  a window from its onset; spans shorter than the window are left out.
- ``labels: <file.csv>``: one row per record, an id column (``id_column``, default the first of
  :data:`ID_COLUMNS`) matched against record names, file names or path endings (PTB-XL's
  ``records500/00000/00001_hr``), and ``targets`` naming numeric label columns; or ``label_column`` naming a
  column of ``{statement: likelihood}`` dictionaries (PTB-XL ``scp_codes``) with ``targets`` the statements (or,
  with ``statements`` = PTB-XL's ``scp_statements.csv``, the diagnostic superclasses) -> multilabel 0/1. Every
  window of a record carries the record's labels; ``subject_column`` (PTB-XL ``patient_id``) names the subject.

Splits (:func:`subject_split`): whole subjects go to train / val / test (no subject in two splits), seeded; a
corpus of fewer subjects than splits is split by time inside each record instead (windows straddling a boundary are
dropped), which keeps train and test disjoint but not subject-independent; the dataset says which in ``split_by``.
"""

from __future__ import annotations

import ast
import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.base import DataError
from modalities.signals.annotations import read_annotations
from modalities.signals.options import SignalOptions
from modalities.signals.record import RecordInfo

ID_COLUMNS = ("record", "record_id", "record_name", "ecg_id", "filename_hr", "filename_lr", "filename", "file", "id")
SPLITS = ("train", "val", "test")
Reader = Callable[[RecordInfo, float], np.ndarray]


@dataclass(frozen=True)
class LabelledWindow:
    """One labelled window: ``window_s`` seconds of ``record`` from ``start_s``, its target row and subject."""

    record: RecordInfo
    start_s: float
    target: tuple[float, ...]
    subject: str


def _classes(targets: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, t in enumerate(targets):
        for label in str(t).split("+"):
            out[label.strip()] = i
    return out


def annotation_windows(records: Sequence[RecordInfo], targets: Sequence[str], window_s: float,
                       stride_s: float | None = None) -> list[LabelledWindow]:
    """Windows at the records' annotations whose label is one of ``targets`` (class index = position).

    A point event (beat) gets one window centred on it; a span at least ``window_s`` long gets one window from its
    onset or, with ``stride_s`` (``data.event_stride_s``), windows every ``stride_s`` seconds that stay inside it
    (a 4.1 s motor-imagery trial gives three 1.25 s windows at stride 1.25 s)."""
    if stride_s is not None and not stride_s > 0:
        raise DataError(f"data.event_stride_s: must be > 0 seconds, got {stride_s!r}")
    classes = _classes(targets)
    items: list[LabelledWindow] = []
    seen: set[str] = set()
    for info in records:
        spans = read_annotations(info)
        seen.update(s.label for s in spans)
        for s in spans:
            if s.label not in classes:
                continue
            if s.duration_s <= 0:
                starts = [s.onset_s - window_s / 2]
            elif s.duration_s + 1e-6 >= window_s:
                n = 1 if stride_s is None else int((s.duration_s - window_s + 1e-6) // stride_s) + 1
                starts = [s.onset_s + k * (stride_s or 0.0) for k in range(n)]
            else:
                continue
            for start in starts:
                if start >= 0 and start + window_s <= info.duration_s:
                    items.append(LabelledWindow(info, float(start), (float(classes[s.label]),), info.name))
    if not items:
        found = ", ".join(sorted(seen)[:12]) or "none"
        raise DataError(f"data.targets: no annotation labelled {', '.join(map(str, targets))} in the records "
                        f"(annotation labels found: {found})")
    return items


def _match(records: Sequence[RecordInfo], key: str) -> RecordInfo | None:
    key = key.strip().replace("\\", "/")
    stem = Path(key).name
    for info in records:
        path = info.path.replace("\\", "/")
        if info.name == key or Path(path).name == stem or Path(path).stem == stem or path.endswith("/" + key):
            return info
    return None


def _superclasses(statements: Path) -> dict[str, str]:
    """PTB-XL ``scp_statements.csv``: diagnostic statement -> its ``diagnostic_class`` (NORM, MI, STTC, CD, HYP)."""
    with open(statements, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "diagnostic_class" not in rows[0]:
        raise DataError(f"data.statements: {statements} has no 'diagnostic_class' column (PTB-XL scp_statements.csv)")
    key = next(iter(rows[0]))  # the unnamed first column holds the statement code
    return {r[key]: r["diagnostic_class"] for r in rows if r.get("diagnostic_class")}


def table_windows(records: Sequence[RecordInfo], labels: Path, targets: Sequence[str], window_s: float,
                  id_column: str | None = None, label_column: str | None = None, subject_column: str | None = None,
                  statements: Path | None = None, max_windows: int = 10) -> list[LabelledWindow]:
    """Windows of every record listed in a per-record label table (see the module docstring)."""
    try:
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise DataError(f"data.labels: cannot read {labels} ({e.strerror})") from None
    if not rows:
        raise DataError(f"data.labels: {labels} has no rows")
    columns = list(rows[0])
    lower = {c.lower(): c for c in columns}
    if id_column is None:
        id_column = next((lower[c] for c in ID_COLUMNS if c in lower), None)
        if id_column is None:
            raise DataError(f"data.labels: {labels} has none of the id columns {', '.join(ID_COLUMNS)}; "
                            f"set data.id_column (columns: {', '.join(columns)})")
    wanted = [c for c in (id_column, label_column, subject_column) if c] + ([] if label_column else list(targets))
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(f"data.labels: {labels} has no column {missing[0]!r} (columns: {', '.join(columns)})")
    mapping = _superclasses(statements) if statements else None
    items: list[LabelledWindow] = []
    short: list[str] = []
    for row in rows:
        info = _match(records, row[id_column])
        if info is None:
            continue
        if label_column:
            try:
                codes = ast.literal_eval(row[label_column] or "{}")
            except (ValueError, SyntaxError):
                raise DataError(f"data.labels: {labels}: {label_column} of {row[id_column]!r} is not a "
                                f"{{statement: likelihood}} dictionary") from None
            present = {mapping.get(c, "") if mapping else c for c in codes}
            target = tuple(float(t in present) for t in targets)
        else:
            try:
                target = tuple(float(row[t]) if row[t].strip() else math.nan for t in targets)
            except ValueError:
                raise DataError(f"data.labels: {labels}: a value of {', '.join(targets)} for {row[id_column]!r} "
                                f"is not a number") from None
        subject = row[subject_column] if subject_column else info.name
        n = min(max_windows, int(info.duration_s // window_s))
        if n < 1:
            short.append(f"{info.name} {info.duration_s:.3g} s")
        items += [LabelledWindow(info, k * window_s, target, str(subject)) for k in range(n)]
    if short:
        listed = ", ".join(short[:5]) + (f", {len(short) - 5} more" if len(short) > 5 else "")
        what = (f"{len(short)} labelled record(s) are shorter than one {window_s:g} s window and give no window "
                f"({listed})")
        if not items:
            raise DataError(f"data.labels: {labels}: {what}; give longer records or a shorter data.window_s")
        warnings.warn(f"data.labels: {labels}: {what}", stacklevel=2)
    if not items:
        examples = ", ".join(r[id_column] for r in rows[:3])
        raise DataError(f"data.labels: no id in {labels}:{id_column} (e.g. {examples}) matches a record of the data "
                        f"({len(records)} records, e.g. {', '.join(i.name for i in records[:3])})")
    return items


def subject_split(items: Sequence[LabelledWindow], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, window_s: float = 0.0) -> tuple[dict[str, np.ndarray], str]:
    """Indices of each split and how it was made (``"subject"`` or ``"time"``).

    By subject: subjects are shuffled (seeded) and dealt, largest first, to the split furthest below its share of
    windows, so no subject is in two splits and the shares are close to ``fractions``. With fewer subjects than
    splits: by time inside each record, cut at the ``fractions`` of its labelled span.
    """
    subjects = sorted({it.subject for it in items})
    rng = np.random.default_rng(seed)
    if len(subjects) >= len(SPLITS):
        order = list(rng.permutation(subjects))
        sizes = {s: sum(1 for it in items if it.subject == s) for s in subjects}
        order.sort(key=lambda s: -sizes[s])  # stable: ties keep the seeded order
        total = len(items)
        filled = {k: 0 for k in SPLITS}
        owner: dict[str, str] = {}
        for i, s in enumerate(order):
            if i < len(SPLITS):  # every split gets at least one subject
                k = ("train", "test", "val")[i]
            else:
                k = min(SPLITS, key=lambda k: filled[k] / total - fractions[SPLITS.index(k)])
            owner[s] = k
            filled[k] += sizes[s]
        return {k: np.array([i for i, it in enumerate(items) if owner[it.subject] == k], dtype=np.int64)
                for k in SPLITS}, "subject"
    cuts = np.cumsum(fractions)[:-1]
    out: dict[str, list[int]] = {k: [] for k in SPLITS}
    by_record: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_record.setdefault(it.record.path, []).append(i)
    for idx in by_record.values():
        t0 = min(items[i].start_s for i in idx)
        t1 = max(items[i].start_s for i in idx) + window_s
        bounds = [t0, *(t0 + c * (t1 - t0) for c in cuts), t1]
        for i in idx:
            a, b = items[i].start_s, items[i].start_s + window_s
            for k, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
                if a >= lo - 1e-9 and b <= hi + 1e-9:
                    out[k].append(i)
                    break
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}, "time"


class LabelledSignalWindows(Dataset):
    """One split of labelled windows, read lazily with the modality's own ``read(record, start_s)``.

    Items: ``{"signal": float32[C, T], "fs", "subject", "label": float32[n_targets]}`` (class index for a
    multiclass target); :meth:`targets` float32[N, n_targets].
    """

    def __init__(self, items: Sequence[LabelledWindow], read: Reader, fs: float, split: str,
                 fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, window_s: float = 0.0) -> None:
        if split not in SPLITS:
            raise DataError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        parts, self.split_by = subject_split(items, fractions, seed, window_s)
        self.items = [items[i] for i in parts[split]]
        self.subjects = sorted({it.subject for it in self.items})
        self.read, self.fs, self.split = read, float(fs), split

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        it = self.items[int(key[0] if isinstance(key, tuple) else key)]
        x = self.read(it.record, it.start_s)
        return {"signal": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), "fs": self.fs,
                "subject": it.subject, "label": torch.tensor(it.target, dtype=torch.float32)}

    def targets(self) -> np.ndarray:
        return np.array([it.target for it in self.items], dtype=np.float32).reshape(len(self.items), -1)


def labelled_windows(opts: SignalOptions, records: Sequence[RecordInfo], read: Reader, split: str,
                     window_s: float) -> LabelledSignalWindows:
    """The labelled dataset a modality's ``build_dataset`` returns when ``data.labels`` is set (``opts``: the
    modality's options)."""
    targets = list(opts.targets)
    if not targets:
        raise DataError("data.targets: name the classes (annotation labels) or label columns to predict")
    source = str(opts.labels)
    if source == "events":
        items = annotation_windows(records, targets, window_s, opts.event_stride_s)
    else:
        items = table_windows(records, Path(source).expanduser(), targets, window_s, opts.id_column,
                              opts.label_column, opts.subject_column,
                              Path(opts.statements).expanduser() if opts.statements else None,
                              opts.max_windows_per_record)
    return LabelledSignalWindows(items, read, opts.fs, split, opts.split_fractions, opts.split_seed, window_s)
