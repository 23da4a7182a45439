"""Labelled PPG probe sets for the label-free-vs-labelled report: by default on the recordings shipped inside the
installed ``heartpy`` package, on the real recordings of a folder with ``--probe-data``.

Inputs are built exactly like pretraining windows of :class:`~modalities.signals.windows.SignalWindows` in the
PPG layout: the record's PPG channel (:func:`ppg_channel`) read and resampled to ``fs``
(:func:`~modalities.signals.resampled.read_window_resampled`), band-passed, z-scored and clipped
(:func:`~modalities.signals.filters.bandpass`, :func:`~modalities.signals.filters.normalize`).

- :func:`heart_rate_probe` (regression): the label of a window is the heart rate that a classical peak detector
  finds *in that same window* (:func:`heart_rate_bpm`: NeuroKit2's Elgendi et al. 2013 systolic-peak detector).
- :func:`record_identity_probe` (classification): which recording a window comes from.
- :func:`probe_targets`: both, on a folder given as ``data.probe_data`` / ``--probe-data`` (the HeartPy recordings
  under ``ppg_heartpy/`` and the ``PLETH`` channel of ``challenge2015/a103l``, 330 s at 250 Hz), or by default on
  the three HeartPy example recordings inside the installed ``heartpy`` package (``heartpy/data/data{,2,3}.csv``:
  25 s, 128 s and 682 s), which every install has.

Why HeartPy's recordings and not a simulator by default: real PPG with real artefacts, whose heart rate the
recording itself determines. A ``neurokit2.ppg_simulate`` heart-rate probe (24 subjects, 50-120 bpm, known rate,
test subjects unseen, motion artefacts and drift up to the pulse amplitude) was tried and dropped: every beat has
the simulator's one shape, and a *random* EfficientNet1d's features already gave ridge R^2 0.87-0.96 on held-out
subjects (3 seeds), so it cannot tell a trained encoder from a random one. On the HeartPy recordings random encoders
reach ridge R^2 0.58-0.74 and logistic identity 0.47-0.84, a log-spectrum 0.84 and 0.96: room above the control.
Caveats: the PPG demo pretrains on these same recordings (without labels), so by default the probes measure what
an encoder learned about recordings it has seen; and with three participants heart rate differs more between
recordings (~60 vs ~95 bpm) than inside them, so part of the heart-rate R^2 can be earned by recognising the
recording ('r within' in the report tells the two apart).

Every record is split in time, first ``train_fraction`` (2/3) train and the rest test, and no window crosses the
split; the identity probe can instead be cross-validated over blocks of time (``probe_identity_folds``, as the ECG
and EEG identity probes do by default; the shared kit :mod:`modalities.signals.probes`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet, probe_folder
from modalities.ppg.heartpy_data import heartpy_data_dir
from modalities.ppg.options import PpgOptions
from modalities.signals import preprocess
from modalities.signals import probes as kit
from modalities.signals.index import index_records
from modalities.signals.preprocess import Band
from modalities.signals.probes import ProbeWindow
from modalities.signals.record import RecordInfo

__all__ = [
    "HEADERLESS_FS",
    "HR_RANGE_BPM",
    "ProbeWindow",
    "heart_rate_bpm",
    "heart_rate_probe",
    "ppg_records",
    "ppg_channel",
    "preprocess_window",
    "probe_records",
    "probe_targets",
    "probe_windows",
    "record_identity_probe",
]

# the probe builders' defaults: the data options' (modalities/ppg/options.py)
DEFAULT_FS: float = PpgOptions.fs
DEFAULT_BAND: Band = PpgOptions.band
DEFAULT_CLIP: float | None = PpgOptions.clip
HR_RANGE_BPM = (30.0, 220.0)
# Rate of HeartPy's data.csv, which states none (one headerless column; 100 Hz in HeartPy's examples).
HEADERLESS_FS = 100.0
# Recordings of a --probe-data folder that hold PPG (a folder, or a WFDB record path without suffix), with the rate
# of their CSV files that state none (HeartPy's data.csv: 100 Hz, see data_cards/heartpy_ppg.md).
PROBE_SOURCES: tuple[tuple[str, float | None], ...] = (("ppg_heartpy", HEADERLESS_FS), ("challenge2015/a103l", None))
_PPG_NAMES = ("PLETH", "PPG", "BVP")


def ppg_channel(info: RecordInfo) -> str | None:
    """The record's PPG channel: the first channel typed ``"ppg"`` by the reader, else the first whose name
    contains PLETH / PPG / BVP, else the only channel of a one-channel CSV file (HeartPy names its PPG column
    ``hr``); ``None`` when the record has none."""
    types = tuple(getattr(info, "channel_types", ()) or ())
    for name, kind in zip(info.channels, types):
        if kind == "ppg":
            return name
    for name in info.channels:
        if any(key in name.upper() for key in _PPG_NAMES):
            return name
    if getattr(info, "format", "wfdb") == "csv" and len(info.channels) == 1:
        return info.channels[0]
    return None


def ppg_records(path: str | Path, csv_fs: float | None = None) -> list[RecordInfo]:
    """Index the recordings under ``path`` with the shared readers (WFDB, CSV, EDF, ...); ``csv_fs`` is the rate of
    CSV files that state none (without it such files are left out with a warning by the index)."""
    return index_records(path, fs=csv_fs)


def preprocess_window(info: RecordInfo, channel: str, start_s: float, window_s: float, fs: float = DEFAULT_FS,
                      band: Band = DEFAULT_BAND, clip: float | None = DEFAULT_CLIP) -> np.ndarray:
    """One model input float32[1, round(window_s * fs)], as SignalWindows builds it for the PPG layout: the shared
    :func:`~modalities.signals.preprocess.preprocess_window` of ``channel`` into the only row, PPG defaults."""
    return preprocess.preprocess_window(info, start_s, window_s, [(channel, 0)], fs, 1, band, clip)


def heart_rate_bpm(x: np.ndarray, fs: float, min_beats: int = 4) -> float | None:
    """Heart rate (beats per minute) of one PPG window, or ``None`` when the window is not usable.

    NeuroKit2's ``ppg_clean`` (Elgendi: 0.5-8 Hz Butterworth) and ``ppg_peaks`` (Elgendi et al. 2013, two moving
    averages of the squared signal) find the systolic peaks; with ``ibi`` the peak-to-peak intervals and ``m``
    their median, intervals outside ``[0.7 m, 1.3 m]`` (a missed or an extra peak) are dropped and

        HR = 60 / mean(kept ibi)

    The window is rejected (``None``) when fewer than ``min_beats`` intervals are kept, more than 30 % are
    dropped, or HR falls outside :data:`HR_RANGE_BPM`.
    """
    import neurokit2 as nk

    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.any(x) or not np.all(np.isfinite(x)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cleaned = nk.ppg_clean(x, sampling_rate=fs)
            _, info = nk.ppg_peaks(cleaned, sampling_rate=fs, method="elgendi")
        except Exception:  # neurokit2 raises on windows without any peak-like structure
            return None
    peaks = np.asarray(info["PPG_Peaks"], dtype=np.float64)
    if len(peaks) < 3:
        return None
    ibi = np.diff(peaks) / fs
    m = np.median(ibi)
    kept = ibi[(ibi >= 0.7 * m) & (ibi <= 1.3 * m)]
    if len(kept) < min_beats or len(kept) < 0.7 * len(ibi):
        return None
    hr = 60.0 / float(kept.mean())
    return hr if HR_RANGE_BPM[0] <= hr <= HR_RANGE_BPM[1] else None


def probe_records(signals_root: str | Path, sources: Sequence[tuple[str, float | None]] = PROBE_SOURCES,
                  ) -> tuple[list[RecordInfo], dict[str, str]]:
    """The records of ``sources`` (``(path relative to signals_root, rate of CSV files without one)``) that have
    a PPG channel, and the skipped ones with the reason. A missing source is skipped, not an error (the probes
    are optional)."""
    root = Path(signals_root)
    records: list[RecordInfo] = []
    skipped: dict[str, str] = {}
    for source, csv_fs in sources:
        path = root / source
        if not path.exists() and not path.with_suffix(".hea").is_file():
            skipped[source] = "missing"
            continue
        for info in ppg_records(path, csv_fs=csv_fs):
            if ppg_channel(info) is None:
                skipped[info.name] = "no PPG channel"
            else:
                records.append(info)
    return records, skipped


def _record_label(info: RecordInfo, root: Path) -> str:
    """A readable record name: its path relative to the signals folder (converted CSVs: their file name)."""
    try:
        return str(Path(info.path).relative_to(root.absolute()))
    except ValueError:
        return info.name


def probe_windows(records: Sequence[RecordInfo], window_s: float, stride_s: float, max_per_record: int = 120,
                  train_fraction: float = 2 / 3) -> list[ProbeWindow]:
    """Windows every ``stride_s`` inside each record's train part (first ``train_fraction``) and test part (the
    rest), none crossing the split; at most ``ceil(train_fraction * max_per_record)`` train and the rest test
    windows per record, spread evenly (:func:`modalities.signals.probes.part_windows`). ``label`` is the record's
    index in ``records``; a record without a PPG channel gives none."""
    out: list[ProbeWindow] = []
    for label, info in enumerate(records):
        channel = ppg_channel(info)
        if channel is not None:
            parts = kit.part_windows(info, channel, label, window_s, stride_s, max_per_record, train_fraction)
            out += [w for part in parts.values() for w in part]
    return out


def heart_rate_probe(records: Sequence[RecordInfo], fs: float = DEFAULT_FS, window_s: float = 8.0,
                     stride_s: float = 2.0, max_per_record: int = 120, *, band: Band = DEFAULT_BAND,
                     clip: float | None = DEFAULT_CLIP) -> ProbeSet:
    """Heart rate (bpm) of each window, from :func:`heart_rate_bpm` on that window, as a regression probe.

    Windows follow :func:`probe_windows`; windows whose heart rate cannot be measured are left out (their count
    is in the description).

    Returns:
        ProbeSet(task="regression") with float32 x [N, 1, round(window_s * fs)], float64 y in bpm and
        ``meta["test_groups"]``: the record index of every test window (for the within-record correlation).

    Raises:
        DataError: fewer than 5 usable train or test windows.
    """
    windows = probe_windows(records, window_s, stride_s, max_per_record)
    parts: dict[str, tuple[list[np.ndarray], list[float]]] = {"train": ([], []), "test": ([], [])}
    test_records: list[int] = []
    rejected = 0
    for w in windows:
        x = preprocess_window(w.record, w.channel, w.start_s, window_s, fs, band, clip)
        hr = heart_rate_bpm(x[0], fs)
        if hr is None:
            rejected += 1
            continue
        parts[w.split][0].append(x)
        parts[w.split][1].append(hr)
        if w.split == "test":
            test_records.append(w.label)
    n_train, n_test = len(parts["train"][1]), len(parts["test"][1])
    if min(n_train, n_test) < 5:
        raise DataError(f"heart_rate probe: only {n_train} train / {n_test} test windows with a measurable heart "
                        f"rate in {', '.join(r.name for r in records)}")
    (x_tr, y_tr), (x_te, y_te) = ((np.stack(parts[s][0]), np.asarray(parts[s][1])) for s in ("train", "test"))
    per_record = dict.fromkeys(w.record.name for w in windows)
    return ProbeSet(
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, task="regression",
        description=(
            f"heart rate (bpm) of each {window_s:g} s PPG window from NeuroKit2 Elgendi peaks on the same window "
            f"(train {y_tr.min():.0f}-{y_tr.max():.0f} bpm, test {y_te.min():.0f}-{y_te.max():.0f} bpm); records "
            f"{', '.join(per_record)}; first 2/3 of each record train, last 1/3 test; {rejected} windows without "
            f"a measurable rate left out; between-record differences dominate the variance, so 'r within' (the "
            f"correlation of predictions and targets inside each record whose test rate varies) tells whether an "
            f"encoder tracks the rate or only recognises the record"
        ),
        meta={"test_groups": np.asarray(test_records, dtype=np.int64)},
    )


def record_identity_probe(records: Sequence[RecordInfo], fs: float = DEFAULT_FS, window_s: float = 8.0,
                          stride_s: float = 2.0, max_per_record: int = 120, *, folds: int | None = None,
                          band: Band = DEFAULT_BAND, clip: float | None = DEFAULT_CLIP,
                          names: Sequence[str] | None = None) -> ProbeSet:
    """Which recording (participant) a PPG window comes from; records without a whole window in every part are
    left out.

    ``folds=None``: first 2/3 of each record train, the rest test (windows as :func:`probe_windows`). ``folds=K``:
    blocked cross-validation over K consecutive blocks of every record, every window in ``x_train`` with its block
    in ``ProbeSet.folds`` (the shared kit, :func:`modalities.signals.probes.identity_windows`).

    Returns:
        ProbeSet(task="classification") with float32 x [N, 1, round(window_s * fs)] and int64 record indices;
        ``class_names`` are the records' names (``names`` when given, one per record).
    """
    kit.part_names(folds, "record_identity_probe")
    windows, kept = kit.identity_windows([(r, ppg_channel(r)) for r in records], window_s, stride_s,
                                         max_per_record, folds=folds)
    if len(kept) < 2:
        where = f"in every one of {folds} blocks" if folds else "on both sides of the train/test split"
        raise DataError(f"record_identity probe: fewer than two PPG records with a {window_s:g} s window {where}")
    all_names = list(names) if names is not None else [r.name for r in records]
    left_out = [all_names[k] for k in range(len(records)) if k not in kept]
    split = (f"blocked cross-validation over {folds} consecutive blocks of each record" if folds
             else "first 2/3 of each record train, last 1/3 test")
    return kit.identity_probe_set(
        windows, lambda w: preprocess_window(w.record, w.channel, w.start_s, window_s, fs, band, clip), folds,
        [all_names[k] for k in kept],
        f"which recording a {window_s:g} s PPG window comes from ({', '.join(all_names[k] for k in kept)}); "
        f"{split}; left out (too short): {', '.join(left_out) or 'none'}")


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None,
                  signals_root: Path | None = None) -> dict[str, ProbeSet]:
    """The PPG probes: on the real recordings of a folder when one is given, else on the installed heartpy recordings.

    Folder (``signals_root``, else ``data_cfg["probe_data"]``, the CLI's ``--probe-data``):
    ``{"heart_rate": ..., "record_identity": ...}`` on the recordings of :data:`PROBE_SOURCES` in it (``{}`` when it
    holds none; a probe that cannot be built from what is there is left out with a warning). No folder: the same two
    probes on the three HeartPy recordings inside the installed ``heartpy`` package (``{}`` with a warning when it is
    not installed).

    ``data_cfg`` (:class:`~modalities.ppg.options.PpgOptions`, or a mapping of some of its options) gives ``fs``,
    ``band``, ``clip`` (so probe inputs match the pretraining inputs), ``probe_window_s``, ``probe_stride_s`` and
    ``probe_identity_folds`` (null: the fixed split; K: identity cross-validated over K blocks). ``data_path`` is
    not used. Every set's ``source`` says where its data came from.
    """
    root = probe_folder(data_cfg, signals_root)
    opts = PpgOptions.of(data_cfg)
    fs, window_s, stride_s, band, clip = opts.fs, opts.probe_window_s, opts.probe_stride(), opts.band, opts.clip
    # Identity keeps the fixed split by default (the PPG results were measured with it); blocked folds on request.
    identity_folds = opts.probe_identity_folds or None
    if root is not None:
        records_root, sources, source = root, PROBE_SOURCES, f"--probe-data {root}"
    else:
        try:
            records_root, sources = heartpy_data_dir(), ((".", HEADERLESS_FS),)
            source = "installed package heartpy (heartpy/data: 3 example recordings)"
            if data_path is not None and {f.name for f in Path(data_path).glob("data*.csv")} >= {"data.csv", "data2.csv"}:
                source += "; the run pretrained on these same recordings (the embedded default), without labels"
        except DataError as exc:
            warnings.warn(f"PPG probes heart_rate and record_identity left out: {exc}", stacklevel=2)
            records_root = None
    probes: dict[str, ProbeSet] = {}
    records = probe_records(records_root, sources)[0] if records_root is not None else []
    if records:
        names = [_record_label(r, records_root) for r in records]
        for key, build in (("heart_rate", heart_rate_probe), ("record_identity", record_identity_probe)):
            kwargs = {"names": names, "folds": identity_folds} if key == "record_identity" else {}
            try:
                probes[key] = build(records, fs=fs, window_s=window_s, stride_s=stride_s, band=band, clip=clip,
                                    **kwargs)
                probes[key].source = source
            except DataError as exc:
                warnings.warn(f"PPG probe {key} left out: {exc}", stacklevel=2)
    return probes
