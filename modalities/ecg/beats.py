"""The ECG beat-class probe: normal (N) vs other annotated beat classes of one MIT-BIH record (default ``100``:
N vs atrial premature, A), each item the window centred on one annotated beat, split by time (train first, test
last), no window crossing the split or a record end.

Inputs are built like pretraining windows (:func:`~modalities.ecg.inputs.preprocess_window`): the record's leads
in their canonical slots, band-passed, z-scored and clipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from modalities.base import DataError, ProbeSet
from modalities.ecg.inputs import DEFAULT_BAND, DEFAULT_CLIP, Band, lead_mapping, preprocess_window
from modalities.ecg.leads import LEADS_12
from modalities.signals.formats.wfdb import read_header
from modalities.signals.record import RecordInfo

__all__ = ["BEAT_SYMBOLS", "BeatSelection", "MIN_CLASS_COUNT", "beat_class_probe", "select_beats"]

# MIT-BIH beat annotation codes (rhythm, signal-quality and comment codes such as "+", "~", "|"
# are not beats).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
MIN_CLASS_COUNT = 10


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
