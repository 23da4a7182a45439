"""Labelled probe sets from real EEG recordings, for the label-free-vs-labelled report.

Probe inputs are built like pretraining windows (:func:`~modalities.eeg.recordings.read_eeg_window`: average
re-reference, 50/60 Hz notch, band-pass, resampling to ``fs``, per-channel z-score and clip).

- :func:`motor_imagery_probe`: rest (``T0``) vs movement (``T1`` or ``T2``) from the first ``window_s`` seconds
  of every annotated event of one PhysioNet EEG Motor Movement/Imagery run, on the seven sensorimotor channels
  :data:`MOTOR_CHANNELS`. Why this task: the bundled run has 19 rest, 10 left-fist and 9 right-fist events;
  left vs right needs the *lateralisation* of mu/beta power, which an encoder that pools over channels cannot
  keep, and 3-way classification leaves 3-4 test events per movement class. Rest vs movement (19 vs 19 events)
  is the task the data can measure. Rest spans last 1.375 s here, so windows are 1.25 s (5 tokens of 0.25 s).
- :func:`record_identity_probe`: which recording a single-channel window comes from: the motor-imagery run
  (``Cz``), the resting eyes-open FIF (``Cz-A2``) and the two single-channel sleep EEG text files (N2 with
  spindles, N3). Montages differ, so each recording contributes one channel (one central channel where it has
  one) and the probe input has C = 1, which the channel-independent encoder reads like any other channel.

Both use a split by time inside each recording: the first ``train_fraction`` trains, the rest tests, and no
window crosses the split, so train and test never share a sample.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet
from modalities.eeg.recordings import EEGRecord, eeg_record, index_eeg, read_eeg_window, read_events
from modalities.signals.records import index_records
from modalities.signals.windows import spaced_starts

__all__ = ["MOTOR_CHANNELS", "motor_imagery_probe", "probe_targets", "record_identity_probe", "text_record"]

MOTOR_CHANNELS = ("FC3", "FC4", "C3", "Cz", "C4", "CP3", "CP4")
MOTOR_RUN = "eeg/test_edf_overlapping_annotations.edf"
IDENTITY_PREFERENCE = ("Cz", "C3", "C4", "Fz", "Pz")
_TEXT_RATE = re.compile(r"_(\d+(?:\.\d+)?)Hz", re.I)


def _default_signals_root() -> Path:
    # <repo>/modalities/eeg/probes.py -> <repo>/../shared/data/signals
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "signals"


def _rows(record: EEGRecord, channels: Sequence[str]) -> list[int]:
    missing = [c for c in channels if c not in record.names]
    if missing:
        raise DataError(f"{record.path}: no channel {missing[0]!r} (has {', '.join(record.names[:10])}, ...)")
    return [record.names.index(c) for c in channels]


def motor_imagery_probe(path: str | Path, fs: float = 128.0, window_s: float = 1.25, train_fraction: float = 2 / 3,
                        channels: Sequence[str] = MOTOR_CHANNELS, **read: Any) -> ProbeSet:
    """Rest (``T0``, class 0) vs movement (``T1``/``T2``, class 1) windows of an annotated motor-imagery run.

    One window per event: the first ``window_s`` seconds after its onset (events shorter than that are left out).
    Events whose window ends by ``train_fraction`` of the run train, those starting after it test.
    ``read`` passes preprocessing options (``band``, ``notch_hz``, ``reref_min_channels``, ``clip``) on.

    Returns:
        ProbeSet with float32 x [N, len(channels), round(window_s * fs)] and int64 labels.
    """
    record = index_eeg(path)[0]
    rows = _rows(record, channels)
    split_s = train_fraction * record.duration_s
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for ev in read_events(record):
        if ev.label not in ("T0", "T1", "T2") or ev.duration_s < window_s - 1e-6:
            continue
        stop = ev.onset_s + window_s
        side = "train" if stop <= split_s else "test" if ev.onset_s >= split_s else None
        if side is None or stop > record.duration_s:
            continue
        parts[side][0].append(read_eeg_window(record, ev.onset_s, window_s, fs, rows=rows, **read))
        parts[side][1].append(0 if ev.label == "T0" else 1)
    if not all(len(set(y)) == 2 for _, y in parts.values()):
        raise DataError(f"{record.path}: need rest (T0) and movement (T1/T2) events on both sides of the "
                        f"{split_s:.0f} s split")
    (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
    counts = {side: np.bincount(y, minlength=2).tolist() for side, (_, y) in parts.items()}
    return ProbeSet(
        x_train=np.stack(x_tr), y_train=np.array(y_tr, dtype=np.int64),
        x_test=np.stack(x_te), y_test=np.array(y_te, dtype=np.int64),
        task="classification", class_names=("rest (T0)", "movement (T1, T2)"),
        description=(f"{record.name}: rest vs movement from the first {window_s:g} s of each annotated event on "
                     f"{', '.join(channels)}; events before {split_s:.0f} s train, after test; "
                     f"[rest, movement] counts {counts}"),
    )


def text_record(path: str | Path) -> EEGRecord:
    """A one-column text file of EEG samples in uV whose name gives the rate (``..._200Hz.txt``, the YASA demo
    files), read by the shared CSV reader; its column counts as an EEG channel."""
    path = Path(path)
    m = _TEXT_RATE.search(path.name)
    if not m:
        raise DataError(f"{path}: no sampling rate in the file name (expected e.g. '_200Hz')")
    info = index_records(path, fs=float(m.group(1)))[0]
    if len(info.channels) != 1:
        raise DataError(f"{path}: expected one column, found {len(info.channels)}")
    return eeg_record(info, info.channels)


def record_identity_probe(records: Sequence[EEGRecord], fs: float = 128.0,
                          window_s: float = 2.0, stride_s: float = 1.0, max_per_record: int = 60,
                          train_fraction: float = 2 / 3, **read: Any) -> ProbeSet:
    """Which recording a one-channel window comes from.

    Each recording gives its first channel named in :data:`IDENTITY_PREFERENCE` (``Cz-A2`` counts as ``Cz``),
    else its first EEG channel (a text file: its only column). Windows every ``stride_s`` lie wholly on one side of
    the split,
    at most ``ceil(train_fraction * max_per_record)`` train and the rest test windows per recording, spread evenly.

    Returns:
        ProbeSet with float32 x [N, 1, round(window_s * fs)]; ``class_names`` are ``file:channel``.
    """
    cap_train = int(math.ceil(train_fraction * max_per_record))
    cap_test = max_per_record - cap_train
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    names: list[str] = []

    def add(windows: dict[str, list[np.ndarray]], name: str) -> None:
        label = len(names)
        names.append(name)
        for side in ("train", "test"):
            xs[side] += windows[side]
            ys[side] += [label] * len(windows[side])

    def starts(duration: float) -> dict[str, list[float]]:
        split = train_fraction * duration
        return {"train": spaced_starts(0.0, split - window_s, stride_s, cap_train),
                "test": spaced_starts(split, duration - window_s, stride_s, cap_test)}

    for rec in records:
        base = {n.split("-")[0]: i for i, n in reversed(list(enumerate(rec.names)))}
        row = next((base[c] for c in IDENTITY_PREFERENCE if c in base), 0)
        s = starts(rec.duration_s)
        if not s["train"] or not s["test"]:
            continue
        add({side: [read_eeg_window(rec, t, window_s, fs, rows=[row], **read) for t in s[side]] for side in s},
            f"{Path(rec.path).name}:{rec.names[row]}")
    if len(names) < 2:
        raise DataError("record_identity_probe: fewer than two recordings long enough for train and test windows")
    return ProbeSet(
        x_train=np.stack(xs["train"]), y_train=np.array(ys["train"], dtype=np.int64),
        x_test=np.stack(xs["test"]), y_test=np.array(ys["test"], dtype=np.int64),
        task="classification", class_names=tuple(names),
        description=(f"recording identity from one channel per recording ({', '.join(names)}); {window_s:g} s "
                     f"windows, first 2/3 of each recording train, last 1/3 test"),
    )


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None,
                  signals_root: Path | None = None) -> dict[str, ProbeSet]:
    """The EEG probes on the bundled real recordings: ``{"motor_imagery": ..., "record_identity": ...}``.

    ``data_cfg`` gives ``fs``, the preprocessing options and ``probe_window_s`` (motor imagery, default 1.25 s);
    ``data_path`` is not used: labels come from the recordings under ``signals_root`` (default
    ``<repo>/../shared/data/signals``: ``eeg/`` and ``sleep/*Hz.txt``). Returns ``{}`` when that folder is
    missing; a probe whose recordings are missing is left out.
    """
    root = Path(signals_root) if signals_root is not None else _default_signals_root()
    if not root.is_dir():
        return {}
    fs = float(data_cfg.get("fs", 128))
    band = data_cfg["band"] if "band" in data_cfg else (0.5, 45.0)
    read = {"band": tuple(band) if band else None, "notch_hz": tuple(data_cfg.get("notch_hz", (50.0, 60.0)) or ()),
            "reref_min_channels": int(data_cfg.get("reref_min_channels", 8)), "clip": data_cfg.get("clip", 10.0)}
    probes: dict[str, ProbeSet] = {}
    if (root / MOTOR_RUN).is_file():
        probes["motor_imagery"] = motor_imagery_probe(root / MOTOR_RUN, fs=fs,
                                                      window_s=float(data_cfg.get("probe_window_s", 1.25)), **read)
    records = index_eeg(root / "eeg") if (root / "eeg").is_dir() else []
    records += [text_record(p) for p in sorted((root / "sleep").glob("*Hz.txt"))] if (root / "sleep").is_dir() else []
    if len(records) >= 2:
        probes["record_identity"] = record_identity_probe(records, fs=fs, **read)
    return probes
