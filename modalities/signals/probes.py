"""The probe kit the signal modalities (ECG, EEG, PPG) share.

- Probe windows (:class:`ProbeWindow`, :func:`part_windows`): a record's fixed windows by part, either the first
  ``train_fraction`` of the record and the rest (``folds=None``) or K consecutive blocks of equal length
  (``folds=K``, blocked cross-validation), none crossing a part's edge
  (:func:`~modalities.signals.windows.probe_part_starts`), so a train and a test window never share a sample.
- The record-identity probe (:func:`identity_windows`, :func:`identity_probe_set`): which record a window comes
  from. Every record with a whole window in every part is one class; with ``folds`` every window sits in
  ``x_train`` with its block in ``ProbeSet.folds`` (each window predicted once by probes fit on the other blocks).
  The modalities choose the channel of each record and read its windows (their own preprocessing).
- Simulated probe corpora (:func:`probe_corpus_dir`, :func:`simulated_source`): where a modality's simulated probe
  subjects are cached and how a probe set names them as its source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet, cache_root
from modalities.signals.windows import probe_part_starts

__all__ = ["ProbeWindow", "corpus_meta", "identity_probe_set", "identity_windows", "part_names", "part_windows",
           "probe_corpus_dir", "simulated_source"]


@dataclass(frozen=True)
class ProbeWindow:
    """One probe window: the record, the channel it reads (a name, or a row where the modality reads by row),
    its start time, the class index of the record and its part (``"train"`` / ``"test"``, or ``"fold<k>"``)."""

    record: Any
    channel: Any
    start_s: float
    label: int
    split: str


def part_names(folds: int | None, where: str) -> list[str]:
    """The parts of a probe: ``["train", "test"]`` for ``folds=None`` (or 0), ``["fold0", ..., "fold<K-1>"]`` for
    ``folds=K``; a single fold is refused with ``"<where>: folds must be at least 2, got ..."``."""
    if folds is not None and folds < 2:
        raise DataError(f"{where}: folds must be at least 2, got {folds}")
    return [f"fold{k}" for k in range(folds)] if folds else ["train", "test"]


def part_windows(record: Any, channel: Any, label: int, window_s: float, stride_s: float, max_windows: int,
                 train_fraction: float = 2 / 3, folds: int | None = None) -> dict[str, list[ProbeWindow]]:
    """The windows of one record (anything with ``duration_s``) by part, every ``stride_s`` and spread evenly,
    at most ``max_windows`` in all (:func:`~modalities.signals.windows.probe_part_starts`); a part may be empty."""
    parts = probe_part_starts(record.duration_s, window_s, stride_s, max_windows, train_fraction, folds)
    return {part: [ProbeWindow(record, channel, s, label, part) for s in starts] for part, starts in parts.items()}


def identity_windows(sources: Sequence[tuple[Any, Any]], window_s: float, stride_s: float, max_per_record: int,
                     train_fraction: float = 2 / 3, folds: int | None = None,
                     ) -> tuple[list[ProbeWindow], list[int]]:
    """Windows of the record-identity probe over ``sources`` (``(record, channel)`` pairs): ``(windows, kept)``.

    A source with a channel (not ``None``) and a whole window in every part (:func:`part_windows`) is one class,
    numbered in order; ``kept`` holds the index in ``sources`` of every class. Windows run record by record, part by
    part, in time order.
    """
    windows: list[ProbeWindow] = []
    kept: list[int] = []
    for i, (record, channel) in enumerate(sources):
        if channel is None:
            continue
        parts = part_windows(record, channel, len(kept), window_s, stride_s, max_per_record, train_fraction, folds)
        if not all(parts.values()):
            continue
        kept.append(i)
        windows += [w for part in parts.values() for w in part]
    return windows, kept


def identity_probe_set(windows: Sequence[ProbeWindow], read: Callable[[ProbeWindow], np.ndarray],
                       folds: int | None, class_names: Sequence[str], description: str,
                       meta: Mapping[str, Any] | None = None) -> ProbeSet:
    """The record-identity :class:`~modalities.base.ProbeSet` of :func:`identity_windows`, each window's input
    from ``read``: ``ProbeSet.folded`` over the ``folds`` blocks (in block order), else the train and test parts.

    Returns:
        a classification ProbeSet with the inputs ``read`` gives, stacked, and int64 class indices.
    """
    x: dict[str, list[np.ndarray]] = {}
    y: dict[str, list[int]] = {}
    for part in part_names(folds, "record_identity_probe"):
        items = [w for w in windows if w.split == part]
        x[part], y[part] = [read(w) for w in items], [w.label for w in items]
    fields = {"class_names": tuple(class_names), "description": description, "meta": dict(meta or {})}
    if folds:
        return ProbeSet.folded(np.stack([v for xs in x.values() for v in xs]), [v for ys in y.values() for v in ys],
                               [k for k, ys in enumerate(y.values()) for _ in ys], **fields)
    return ProbeSet(x_train=np.stack(x["train"]), y_train=np.array(y["train"], dtype=np.int64),
                    x_test=np.stack(x["test"]), y_test=np.array(y["test"], dtype=np.int64), task="classification",
                    **fields)


def probe_corpus_dir(modality: str, name: str, seed: int, cache_dir: str | Path | None = None) -> Path:
    """``cache_dir/probes/<name>-seed<seed>``, the folder a modality's simulated probe subjects are built into
    once (default ``cache_dir``: ``cache_root()/<modality>``)."""
    base = Path(cache_dir) if cache_dir is not None else cache_root() / modality
    return base / "probes" / f"{name}-seed{int(seed)}"


def corpus_meta(root: str | Path, kind: str) -> dict[str, Any]:
    """The ``corpus.json`` a simulator wrote into ``root`` (its seed, size and every subject's parameters);
    ``"<root>/corpus.json: not a simulated <kind> corpus (...)"`` when it cannot be read."""
    path = Path(root) / "corpus.json"
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"a JSON {type(meta).__name__}, not an object")
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a simulated {kind} corpus ({exc})") from None
    return meta


def simulated_source(root: str | Path, what: str, kind: str) -> str:
    """The ``ProbeSet.source`` of a probe on a simulated corpus: ``"simulated (<what>, seed S): N subjects of D s,
    not in the training default"`` from its :func:`corpus_meta`."""
    meta = corpus_meta(root, kind)
    try:
        return (f"simulated ({what}, seed {meta['seed']}): {meta['n_subjects']} subjects of {meta['duration_s']:g} s, "
                f"not in the training default")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{Path(root) / 'corpus.json'}: not a simulated {kind} corpus ({exc})") from None
