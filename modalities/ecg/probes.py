"""Labelled ECG probe sets for the label-free-vs-labelled report: simulated by default, real with ``--probe-data``.

Inputs are built exactly like pretraining windows of
:class:`~modalities.signals.windows.SignalWindows`: the record's channels are mapped to canonical
leads with :func:`~modalities.ecg.leads.lead_alias`, read and resampled to ``fs`` with
:func:`~modalities.signals.resampled.read_window_resampled`, band-passed on the filled leads
(:func:`~modalities.signals.filters.bandpass`), z-scored per lead and clipped
(:func:`~modalities.signals.filters.normalize`); leads a record lacks stay zero.

Probes on real annotated records (a folder given as ``data.probe_data`` / ``--probe-data``):

- :func:`beat_class_probe`: normal (N) vs atrial premature (A) beats of MIT-BIH record ``mitdb/100``.
- :func:`record_identity_probe`: which record a window comes from, from one lead per record, so
  the probe measures morphology rather than which lead slots are filled.

Default probes, built when no folder is given (every install gets them; nothing outside the package is read):
ECGSYN subjects from :mod:`modalities.ecg.simulate` drawn with :data:`PROBE_SEED`, not the seed of the embedded
training corpus, so no probe subject was seen in pretraining; simulated once into the cache
(:func:`simulated_probe_corpus`). Their labels are the simulator's own parameters:

- :func:`subject_identity_probe`: which simulated subject a window comes from (each subject has its own heart
  rate, electrical axis, wave timing and amplitudes), the record-identity probe on the simulated records.
- :func:`heart_rate_probe`: the subject's mean heart rate (the ``heart_rate_bpm`` it was simulated with) as a
  regression target, train and test on *different* subjects, so the probe must read the beat interval rather than
  recognise a subject.

Both leave room above a random encoder (measured at fs 500, 2 seeds): a random ``vit1d_xs`` scores identity
kNN 0.24-0.26 balanced accuracy (chance 0.04) and heart-rate ridge R^2 -0.53 to -0.33, the log-spectrum of lead II's
rectified signal 0.57 and 0.58.

:func:`probe_targets` picks one set or the other. Beat class uses a fixed split by time (train first, test last);
identity, by default, blocked cross-validation over consecutive thirds of every record (every window is a test
window once), or the same fixed split. No window crosses a split or block edge, so train and test windows never
share a sample. Identity's kNN takes the single nearest training window (:data:`IDENTITY_KNN_K`), beat class the
library's class-balanced 5-vote.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet, cache_root, probe_folder
from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.signals.filters import bandpass, normalize
from modalities.signals.formats.wfdb import read_header
from modalities.signals.index import index_records
from modalities.signals.record import RecordInfo
from modalities.signals.resampled import read_window_resampled
from modalities.signals.windows import probe_part_starts

__all__ = [
    "BeatSelection",
    "IdentityWindow",
    "PROBE_SEED",
    "beat_class_probe",
    "heart_rate_probe",
    "identity_windows",
    "preprocess_window",
    "probe_targets",
    "record_identity_probe",
    "select_beats",
    "simulated_probe_corpus",
    "subject_identity_probe",
]

Band = tuple[float | None, float | None] | None

DEFAULT_BAND: Band = (0.5, 100.0)
DEFAULT_CLIP: float | None = 5.0

# MIT-BIH beat annotation codes (rhythm, signal-quality and comment codes such as "+", "~", "|"
# are not beats).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
MIN_CLASS_COUNT = 10

# Lead used by the identity probe when a record has several: lead II first, then the leads whose
# axis is closest to it (inferior limb leads, left chest leads), right-sided leads last.
IDENTITY_LEAD_PREFERENCE = ("II", "aVF", "I", "III", "V5", "V6", "V4", "V3", "V2", "V1", "aVL", "aVR")
IDENTITY_SLOT = "II"
# Neighbours of the identity probe's kNN (pretrain.evaluate.knn_predict): the nearest window alone, no vote. The
# 38 s PTB record gives 27 windows beside 120 of each other record; under the library's 1 / n_c-weighted 5-vote one
# PTB window among a window's 5 nearest outvotes the other 4, and on average 69 % (33-81 %) of the kNN errors of
# patch-norm ECG-JEPA encoders and their random controls were windows called PTB
# (benchmarks/ecg_identity_knn_votes.py).
IDENTITY_KNN_K = 1


# Simulated probe subjects: ECGSYN seed 1001 (the embedded training corpus uses seed 0: no subject is in both),
# 24 subjects of 20 s at 500 Hz (~0.6 s of CPU each, simulated once into the cache); the first 16 subjects train the
# heart-rate probe and the other 8 test it.
PROBE_SEED = 1001
PROBE_SUBJECTS = 24
PROBE_DURATION_S = 20.0
PROBE_FS = 500
HR_TRAIN_SUBJECTS = 16
HR_WINDOW_S = 5.0  # >= 4 beats at the slowest simulated rate (50 bpm)


def preprocess_window(
    info: RecordInfo,
    start_s: float,
    window_s: float,
    mapping: Sequence[tuple[str, int]],
    fs: float,
    n_leads: int = len(LEADS_12),
    band: Band = DEFAULT_BAND,
    clip: float | None = DEFAULT_CLIP,
) -> np.ndarray:
    """One model input, float32[n_leads, round(window_s * fs)], as SignalWindows builds it.

    ``mapping`` pairs a record channel with the output row it fills; other rows are zero.
    """
    x = np.zeros((n_leads, int(round(window_s * fs))), dtype=np.float32)
    if not mapping:
        return x
    names = [name for name, _ in mapping]
    rows = [row for _, row in mapping]
    x[rows] = read_window_resampled(info, start_s, window_s, names, fs)
    if band is not None:
        x[rows] = bandpass(x[rows], fs, band[0], band[1])
    return normalize(x, clip=clip).astype(np.float32, copy=False)


def lead_mapping(info: RecordInfo, leads: Sequence[str]) -> list[tuple[str, int]]:
    """Record channel -> output row, the first channel of each canonical lead (as SignalWindows)."""
    rows: dict[int, str] = {}
    for name in info.channels:
        lead = lead_alias(name)
        if lead in leads:
            rows.setdefault(list(leads).index(lead), name)
    return sorted(((name, row) for row, name in rows.items()), key=lambda t: t[1])


# ---------------------------------------------------------------------------------------- beats


@dataclass(frozen=True)
class BeatSelection:
    """Beats chosen for the beat-class probe, as annotation sample indices of the record."""

    record: RecordInfo
    class_names: tuple[str, ...]
    train_samples: np.ndarray  # int64, sorted
    train_labels: np.ndarray  # int64 indices into class_names
    test_samples: np.ndarray
    test_labels: np.ndarray
    dropped: dict[str, int]  # beat classes left out (fewer than MIN_CLASS_COUNT beats) -> count
    split_s: float  # train windows end at or before this time, test windows start at or after it


def select_beats(
    record: str | Path,
    window_s: float = 2.5,
    train_fraction: float = 0.7,
    max_normal_train: int = 300,
    max_normal_test: int = 150,
    seed: int = 0,
) -> BeatSelection:
    """Choose the annotated beats of a record for :func:`beat_class_probe`.

    A beat's window is ``window_s`` seconds centred on its annotation. Rules:

    - only beat annotations (:data:`BEAT_SYMBOLS`) count; classes with fewer than
      :data:`MIN_CLASS_COUNT` beats in the record are dropped (record 100: one V beat);
    - train beats have their whole window in the first ``train_fraction`` of the record, test
      beats in the rest; beats whose window crosses that time or a record end are left out;
    - a window of the majority class ``N`` is kept only when every beat annotation inside it is
      ``N`` (an N beat next to an A beat would otherwise carry the A beat into its window);
    - ``N`` is subsampled at random (``seed``) to at most ``max_normal_train`` / ``max_normal_test``
      beats so the probe is fast and not won by predicting the majority class; other classes are
      kept whole.

    Raises:
        DataError: the record or its ``.atr`` annotations cannot be read, or fewer than two beat
            classes remain.
    """
    import wfdb

    info = read_header(record)
    try:
        ann = wfdb.rdann(info.path, "atr")
    except Exception as exc:  # wfdb's errors carry no file name
        raise DataError(f"{info.path}.atr: cannot read beat annotations ({exc})") from None
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = np.asarray(ann.symbol, dtype=object)
    is_beat = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
    samples, symbols = samples[is_beat], symbols[is_beat]
    ann_fs = float(ann.fs or info.fs)

    counts = Counter(symbols.tolist())
    kept = [s for s, n in counts.most_common() if n >= MIN_CLASS_COUNT]
    dropped = {s: n for s, n in counts.items() if n < MIN_CLASS_COUNT}
    if len(kept) < 2 or "N" not in kept:
        raise DataError(
            f"{info.path}.atr: need normal (N) and at least one other beat class with "
            f">= {MIN_CLASS_COUNT} beats, found {dict(counts)}"
        )
    class_names = tuple(["N"] + [s for s in kept if s != "N"])

    t = samples / ann_fs
    half = window_s / 2
    start, stop = t - half, t + half
    split_s = train_fraction * info.duration_s
    in_train = (start >= 0) & (stop <= split_s)
    in_test = (start >= split_s) & (stop <= info.duration_s)

    # Beats (of any class) inside each window: pure-N windows have none but N.
    order = np.argsort(t)
    t_sorted, sym_sorted = t[order], symbols[order]
    lo = np.searchsorted(t_sorted, start, side="left")
    hi = np.searchsorted(t_sorted, stop, side="right")
    pure_n = np.array(
        [all(s == "N" for s in sym_sorted[a:b]) for a, b in zip(lo, hi)], dtype=bool
    )

    rng = np.random.default_rng(seed)
    out = []
    for part, cap in ((in_train, max_normal_train), (in_test, max_normal_test)):
        chosen: list[int] = []
        for label, name in enumerate(class_names):
            idx = np.flatnonzero(part & (symbols == name) & (pure_n if name == "N" else True))
            if name == "N" and len(idx) > cap:
                idx = np.sort(rng.choice(idx, size=cap, replace=False))
            chosen += idx.tolist()
        chosen_arr = np.array(sorted(chosen, key=lambda i: samples[i]), dtype=np.int64)
        labels = np.array([class_names.index(symbols[i]) for i in chosen_arr], dtype=np.int64)
        out.append((samples[chosen_arr], labels))
    (train_samples, train_labels), (test_samples, test_labels) = out
    return BeatSelection(
        record=info,
        class_names=class_names,
        train_samples=train_samples,
        train_labels=train_labels,
        test_samples=test_samples,
        test_labels=test_labels,
        dropped=dropped,
        split_s=split_s,
    )


def beat_class_probe(
    record_dir: str | Path,
    fs: float = 500,
    window_s: float = 2.5,
    seed: int = 0,
    *,
    record: str = "100",
    leads: Sequence[str] = LEADS_12,
    band: Band = DEFAULT_BAND,
    clip: float | None = DEFAULT_CLIP,
) -> ProbeSet:
    """Beat classes of an annotated MIT-BIH record (default ``100``) as a probe set.

    ``record_dir`` holds ``<record>.hea``, its signal file and ``<record>.atr``. Each item is the
    ``window_s`` window centred on one annotated beat, with the record's leads in their canonical
    slots (record 100: MLII -> II, V5 -> V5). Classes, split and subsampling follow
    :func:`select_beats`; for record 100 this gives N vs A (its single V beat is dropped), about
    300 + 22 train and 150 + 10 test windows.

    Returns:
        ProbeSet with float32 x of shape [N, len(leads), round(window_s * fs)] and int64 labels
        indexing ``class_names`` (``("N", "A")`` for record 100).
    """
    sel = select_beats(Path(record_dir) / record, window_s=window_s, seed=seed)
    info = sel.record
    mapping = lead_mapping(info, leads)
    if not mapping:
        raise DataError(f"{info.path}: no channel maps to the leads {list(leads)}")

    def build(samples: np.ndarray) -> np.ndarray:
        x = np.zeros((len(samples), len(leads), int(round(window_s * fs))), dtype=np.float32)
        for i, s in enumerate(samples):
            start_s = s / info.fs - window_s / 2
            x[i] = preprocess_window(info, start_s, window_s, mapping, fs, len(leads), band, clip)
        return x

    counts = {name: int((sel.train_labels == k).sum()) for k, name in enumerate(sel.class_names)}
    dropped = ", ".join(f"{s} ({n})" for s, n in sorted(sel.dropped.items())) or "none"
    return ProbeSet(
        x_train=build(sel.train_samples),
        y_train=sel.train_labels,
        x_test=build(sel.test_samples),
        y_test=sel.test_labels,
        task="classification",
        class_names=sel.class_names,
        description=(
            f"MIT-BIH record {info.name}: beat class of the {window_s:g} s window centred on each "
            f"annotated beat ({', '.join(sel.class_names)}); first {sel.split_s:.0f} s train, rest "
            f"test; N subsampled (train counts {counts}); dropped classes: {dropped}"
        ),
    )


# ------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class IdentityWindow:
    """One window of the record-identity probe."""

    record: RecordInfo
    channel: str  # the record channel placed in the IDENTITY_SLOT
    start_s: float
    label: int
    split: str  # "train" / "test", or "fold<k>" under blocked cross-validation


def _identity_channel(info: RecordInfo) -> str | None:
    by_lead: dict[str, str] = {}
    for name in info.channels:
        lead = lead_alias(name)
        if lead is not None:
            by_lead.setdefault(lead, name)
    for lead in IDENTITY_LEAD_PREFERENCE:
        if lead in by_lead:
            return by_lead[lead]
    return None


def identity_windows(
    signals_root: str | Path,
    window_s: float = 10.0,
    stride_s: float = 5.0,
    max_per_record: int = 40,
    train_fraction: float = 2 / 3,
    min_windows: int = 3,
    folds: int | None = None,
) -> tuple[list[IdentityWindow], tuple[str, ...], dict[str, str]]:
    """Windows of :func:`record_identity_probe`: ``(windows, class_names, skipped)``.

    Every WFDB record under ``signals_root`` that has an ECG lead (see
    :data:`IDENTITY_LEAD_PREFERENCE`) and lasts at least ``min_windows * window_s`` seconds is one
    class. ``folds=None``: its first ``train_fraction`` is the train part and the rest the test part,
    at most ``ceil(train_fraction * max_per_record)`` train and the rest of ``max_per_record`` test
    windows. ``folds=K``: K consecutive blocks of equal length, parts ``fold0`` ... with at most
    ``ceil(max_per_record / K)`` windows each. Windows start every ``stride_s`` seconds, lie wholly
    inside their part and are spread evenly over it (:func:`probe_part_starts`). ``skipped`` maps
    each record left out to the reason.
    """
    root = Path(signals_root)
    with warnings.catch_warnings():  # CSV/EDF files of other modalities that share the folder are not ECG records
        warnings.simplefilter("ignore", UserWarning)
        records = [r for r in index_records(root) if r.format == "wfdb"]
    windows: list[IdentityWindow] = []
    class_names: list[str] = []
    skipped: dict[str, str] = {}
    if folds is not None and folds < 2:
        raise DataError(f"record_identity_probe: folds must be at least 2, got {folds}")
    for info in records:
        rel = str(Path(info.path).relative_to(root.absolute())) if root.is_dir() else info.name
        channel = _identity_channel(info)
        if info.duration_s < min_windows * window_s:
            skipped[rel] = f"{info.duration_s:g} s is shorter than {min_windows} windows"
            continue
        if channel is None:
            skipped[rel] = "no ECG lead"
            continue
        parts = probe_part_starts(info.duration_s, window_s, stride_s, max_per_record, train_fraction, folds)
        if not all(parts.values()):
            skipped[rel] = "no whole window in every " + ("block" if folds else "part")
            continue
        label = len(class_names)
        class_names.append(rel)
        windows += [IdentityWindow(info, channel, s, label, part) for part, starts in parts.items() for s in starts]
    return windows, tuple(class_names), skipped


def record_identity_probe(
    signals_root: str | Path,
    fs: float = 500,
    window_s: float = 10.0,
    stride_s: float = 5.0,
    max_per_record: int = 40,
    *,
    folds: int | None = None,
    leads: Sequence[str] = LEADS_12,
    band: Band = DEFAULT_BAND,
    clip: float | None = DEFAULT_CLIP,
) -> ProbeSet:
    """Which record a window comes from, with one lead per record in the same slot.

    Each record contributes a single lead, the most lead-II-like it has (mitdb/100: MLII,
    challenge2015/a103l: II, ptbdb/s0010_re: ii, mimicdb/03700181: MCL1, its only ECG lead), always
    placed in slot ``II`` with every other slot zero: a probe that could read which slots are
    filled would otherwise tell records apart without looking at the heart. Caveat: MCL1 is a
    V1-like lead, so that record also differs from the others by lead type, not only by subject.
    Records shorter than three windows (macecgdb's 8 s) are skipped. Windows and split follow
    :func:`identity_windows`; with ``folds`` every window sits in ``x_train`` with its block in
    ``ProbeSet.folds`` (blocked cross-validation, each window predicted once by probes fit on the
    other blocks).

    Returns:
        ProbeSet with float32 x [N, len(leads), round(window_s * fs)] and int64 record indices;
        ``class_names`` are the records' paths relative to ``signals_root``.
    """
    if IDENTITY_SLOT not in leads:
        raise DataError(f"record_identity_probe: leads {list(leads)} have no {IDENTITY_SLOT!r} slot")
    row = list(leads).index(IDENTITY_SLOT)
    windows, class_names, skipped = identity_windows(signals_root, window_s, stride_s, max_per_record,
                                                     folds=folds)
    if len(class_names) < 2:
        raise DataError(f"{signals_root}: fewer than two ECG records long enough for the identity probe")

    def build(split: str) -> tuple[np.ndarray, np.ndarray]:
        items = [w for w in windows if w.split == split]
        x = np.zeros((len(items), len(leads), int(round(window_s * fs))), dtype=np.float32)
        for i, w in enumerate(items):
            x[i] = preprocess_window(
                w.record, w.start_s, window_s, [(w.channel, row)], fs, len(leads), band, clip
            )
        return x, np.array([w.label for w in items], dtype=np.int64)

    used = ", ".join(
        f"{name} ({next(w.channel for w in windows if w.label == k)})"
        for k, name in enumerate(class_names)
    )
    skip = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "none"
    split = (f"blocked cross-validation over {folds} consecutive blocks of each record" if folds
             else "first 2/3 of each record train, last 1/3 test")
    description = (f"record identity from one lead per record in slot {IDENTITY_SLOT}: {used}; "
                   f"{window_s:g} s windows, {split}; kNN with k = {IDENTITY_KNN_K}; skipped: {skip}")
    meta = {"knn_k": IDENTITY_KNN_K}
    if folds:
        parts = [f"fold{k}" for k in range(folds)]
        x, y = zip(*(build(part) for part in parts))
        return ProbeSet.folded(np.concatenate(x), np.concatenate(y),
                               np.repeat(np.arange(folds), [len(v) for v in y]),
                               class_names=class_names, description=description, meta=meta)
    x_train, y_train = build("train")
    x_test, y_test = build("test")
    return ProbeSet(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, task="classification",
                    class_names=class_names, description=description, meta=meta)


# ------------------------------------------------------------------------------------ simulated


def simulated_probe_corpus(cache_dir: str | Path | None = None, seed: int = PROBE_SEED,
                           n_subjects: int = PROBE_SUBJECTS, duration_s: float = PROBE_DURATION_S,
                           fs: int = PROBE_FS) -> Path:
    """The simulated ECGSYN probe subjects as WFDB records with ``corpus.json`` (each subject's parameters), built
    once into ``cache_dir/probes/ecgsyn-seed<seed>`` (default ``cache_dir``: ``cache_root()/ecg``) by
    :func:`modalities.ecg.simulate.simulate_corpus`; later calls only check it."""
    from modalities.ecg.simulate import simulate_corpus

    base = Path(cache_dir) if cache_dir is not None else cache_root() / "ecg"
    return simulate_corpus(base / "probes" / f"ecgsyn-seed{int(seed)}", n_subjects=n_subjects,
                           duration_s=duration_s, fs=fs, seed=seed)


def _corpus_subjects(root: Path) -> list[dict[str, Any]]:
    import json

    path = Path(root) / "corpus.json"
    try:
        subjects = json.loads(path.read_text())["subjects"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a simulated ECGSYN corpus ({exc})") from None
    return list(subjects)


def _simulated_source(root: Path) -> str:
    import json

    meta = json.loads((Path(root) / "corpus.json").read_text())
    return (f"simulated (ECGSYN, seed {meta['seed']}): {meta['n_subjects']} subjects of {meta['duration_s']:g} s, "
            f"not in the training default")


def heart_rate_probe(root: str | Path, fs: float = 500, window_s: float = HR_WINDOW_S, stride_s: float | None = None,
                     train_subjects: int = HR_TRAIN_SUBJECTS, *, leads: Sequence[str] = LEADS_12,
                     band: Band = DEFAULT_BAND, clip: float | None = DEFAULT_CLIP) -> ProbeSet:
    """Mean heart rate of simulated subjects (a regression probe) from the ECGSYN corpus in ``root``.

    Every record of ``corpus.json`` (written by :func:`~modalities.ecg.simulate.simulate_corpus`) gives windows of
    ``window_s`` every ``stride_s`` (default: half a window) over its whole length, with all its leads in their
    canonical slots; the target of a window is the ``heart_rate_bpm`` the subject was simulated with (its beats
    vary around it by the subject's 1-4 bpm heart-rate SD). The first ``train_subjects`` subjects are the train set,
    the others the test set: an encoder scores only by reading the beat interval, never by recognising a subject.

    Returns:
        ProbeSet(task="regression") with float32 x [N, len(leads), round(window_s * fs)] and float64 y in bpm;
        ``meta["subjects"]``: the record name of every train and test window.
    """
    root = Path(root)
    subjects = _corpus_subjects(root)
    if not 0 < train_subjects < len(subjects):
        raise DataError(f"{root}: heart-rate probe needs 1 <= train_subjects < {len(subjects)} subjects, "
                        f"got {train_subjects}")
    stride_s = window_s / 2 if stride_s is None else stride_s
    n = int(round(window_s * fs))
    parts: dict[str, tuple[list[np.ndarray], list[float], list[str]]] = {"train": ([], [], []), "test": ([], [], [])}
    for k, subject in enumerate(subjects):
        info = read_header(root / subject["record"])
        mapping = lead_mapping(info, leads)
        if not mapping:
            raise DataError(f"{info.path}: no channel maps to the leads {list(leads)}")
        starts = np.arange(0.0, info.duration_s - window_s + 1e-9, stride_s)
        side = "train" if k < train_subjects else "test"
        for start in starts:
            parts[side][0].append(preprocess_window(info, float(start), window_s, mapping, fs, len(leads), band, clip))
            parts[side][1].append(float(subject["heart_rate_bpm"]))
            parts[side][2].append(info.name)
    (x_tr, y_tr, s_tr), (x_te, y_te, s_te) = parts["train"], parts["test"]
    if not x_tr or not x_te:
        raise DataError(f"{root}: records shorter than one {window_s:g} s heart-rate window")
    y_tr_a, y_te_a = np.asarray(y_tr), np.asarray(y_te)
    return ProbeSet(
        x_train=np.stack(x_tr).reshape(-1, len(leads), n), y_train=y_tr_a,
        x_test=np.stack(x_te).reshape(-1, len(leads), n), y_test=y_te_a, task="regression",
        description=(f"mean heart rate (bpm) each simulated subject was generated with, from {window_s:g} s 12-lead "
                     f"windows; subjects 1-{train_subjects} train ({y_tr_a.min():.0f}-{y_tr_a.max():.0f} bpm), the "
                     f"other {len(subjects) - train_subjects} test ({y_te_a.min():.0f}-{y_te_a.max():.0f} bpm): "
                     f"no test subject is seen by the probe"),
        meta={"subjects": {"train": s_tr, "test": s_te}},
        source=_simulated_source(root),
    )


def subject_identity_probe(root: str | Path, fs: float = 500, window_s: float = 2.5, stride_s: float = 1.25,
                           max_per_record: int = 120, *, folds: int | None = 3, leads: Sequence[str] = LEADS_12,
                           band: Band = DEFAULT_BAND, clip: float | None = DEFAULT_CLIP) -> ProbeSet:
    """Which simulated subject a window comes from: :func:`record_identity_probe` on the ECGSYN records in
    ``root`` (lead II in slot II, windows of held-out blocks of every subject, nearest-window kNN)."""
    root = Path(root)
    ps = record_identity_probe(root, fs=fs, window_s=window_s, stride_s=stride_s, max_per_record=max_per_record,
                               folds=folds, leads=leads, band=band, clip=clip)
    split = (f"blocked cross-validation over {folds} consecutive blocks of each subject" if folds
             else "first 2/3 of each subject train, last 1/3 test")
    ps.description = (f"which of {len(ps.class_names)} simulated subjects (ecgsyn_0000-{len(ps.class_names) - 1:04d}; "
                      f"each its own heart rate, axis, wave timing and amplitudes) a window comes from, lead II in "
                      f"slot {IDENTITY_SLOT}; {window_s:g} s windows, {split}; kNN with k = {IDENTITY_KNN_K}")
    ps.source = _simulated_source(root)
    return ps


# ------------------------------------------------------------------------------------- registry


def probe_targets(
    data_cfg: Mapping[str, Any], data_path: Path | None, signals_root: Path | None = None
) -> dict[str, ProbeSet]:
    """The ECG probes: on real records when a folder is given, on simulated subjects otherwise.

    Folder (``signals_root``, else ``data_cfg["probe_data"]``, the CLI's ``--probe-data``):
    ``{"beat_class": ..., "record_identity": ...}`` on the annotated WFDB records in it (beat class needs
    ``mitdb/100.hea`` + ``.atr``; identity every record with an ECG lead); a probe whose records are missing is left
    out. No folder: ``{"subject_identity": ..., "heart_rate": ...}`` on the ECGSYN probe subjects
    (:func:`simulated_probe_corpus`, cached under ``cache_root()/ecg``).

    ``data_cfg`` gives ``fs``, optionally ``probe_window_s`` / ``probe_stride_s`` (identity windows, default
    2.5 s / half of it), ``probe_identity_folds`` (default 3; null or 0 for the fixed split) and, when present,
    ``leads``, ``band`` and ``clip``, so probe inputs match the pretraining inputs. ``data_path`` is not used.
    Every set's ``source`` says where its data came from.
    """
    root = probe_folder(data_cfg, signals_root)
    fs = float(data_cfg.get("fs", 500))
    # Identity windows of 2.5 s (1.25 s stride) give every record, even the 38 s PTB one, >= 9 test windows;
    # with 10 s windows the test set was 13/13/13/1 and one window moved balanced accuracy by 0.25.
    window_s = float(data_cfg.get("probe_window_s", 2.5))
    stride_s = float(data_cfg.get("probe_stride_s", window_s / 2))
    leads = tuple(data_cfg.get("leads") or LEADS_12)
    band = data_cfg["band"] if "band" in data_cfg else DEFAULT_BAND
    band = tuple(band) if band is not None else None
    clip = data_cfg["clip"] if "clip" in data_cfg else DEFAULT_CLIP
    folds = data_cfg.get("probe_identity_folds", 3)
    folds = int(folds) if folds else None
    probes: dict[str, ProbeSet] = {}
    if root is None:
        sim = simulated_probe_corpus()
        if IDENTITY_SLOT in leads:
            probes["subject_identity"] = subject_identity_probe(sim, fs=fs, window_s=window_s, stride_s=stride_s,
                                                                folds=folds, leads=leads, band=band, clip=clip)
        probes["heart_rate"] = heart_rate_probe(sim, fs=fs, leads=leads, band=band, clip=clip)
        return probes
    source = f"--probe-data {root}"
    if (root / "mitdb" / "100.hea").is_file() and (root / "mitdb" / "100.atr").is_file():
        probes["beat_class"] = beat_class_probe(root / "mitdb", fs=fs, leads=leads, band=band, clip=clip)
        probes["beat_class"].source = source
    if IDENTITY_SLOT in leads and any(root.rglob("*.hea")):
        # Blocked cross-validation: on the test records (mitdb, challenge2015, ptbdb, mimicdb) each of the 387
        # windows is a test window once, where the fixed split tested 129 (9 from the 38 s PTB record, so one window
        # moved balanced accuracy by 0.028).
        if len(identity_windows(root, window_s, stride_s, 120, folds=folds)[1]) >= 2:
            probes["record_identity"] = record_identity_probe(
                root, fs=fs, window_s=window_s, stride_s=stride_s, max_per_record=120, folds=folds, leads=leads,
                band=band, clip=clip
            )
            probes["record_identity"].source = source
    return probes
