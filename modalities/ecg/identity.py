"""The ECG record-identity probe: which record a window comes from, from one lead per record, so the probe measures
morphology rather than which lead slots are filled.

Windows, parts (fixed split or blocked folds) and the probe set come from the shared kit
(:mod:`modalities.signals.probes`); this module chooses each record's lead and reads it into slot ``II``
(:func:`~modalities.ecg.inputs.preprocess_window`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from modalities.base import DataError, ProbeSet
from modalities.ecg.inputs import DEFAULT_BAND, DEFAULT_CLIP, Band, preprocess_window
from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.signals import probes as kit
from modalities.signals.index import index_records
from modalities.signals.probes import ProbeWindow
from modalities.signals.record import RecordInfo

__all__ = ["IDENTITY_KNN_K", "IDENTITY_LEAD_PREFERENCE", "IDENTITY_SLOT", "IdentityWindow", "identity_windows",
           "record_identity_probe"]

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

# One window of the identity probe: its record, the record channel placed in the IDENTITY_SLOT, start time, class
# index and part ("train" / "test", or "fold<k>" under blocked cross-validation).
IdentityWindow = ProbeWindow


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
) -> tuple[list[ProbeWindow], tuple[str, ...], dict[str, str]]:
    """Windows of :func:`record_identity_probe`: ``(windows, class_names, skipped)``.

    Every WFDB record under ``signals_root`` that has an ECG lead (see
    :data:`IDENTITY_LEAD_PREFERENCE`) and lasts at least ``min_windows * window_s`` seconds is one
    class. ``folds=None``: its first ``train_fraction`` is the train part and the rest the test part,
    at most ``ceil(train_fraction * max_per_record)`` train and the rest of ``max_per_record`` test
    windows. ``folds=K``: K consecutive blocks of equal length, parts ``fold0`` ... with at most
    ``ceil(max_per_record / K)`` windows each. Windows start every ``stride_s`` seconds, lie wholly
    inside their part and are spread evenly over it (:func:`modalities.signals.probes.identity_windows`).
    ``skipped`` maps each record left out to the reason.
    """
    root = Path(signals_root)
    with warnings.catch_warnings():  # CSV/EDF files of other modalities that share the folder are not ECG records
        warnings.simplefilter("ignore", UserWarning)
        records = [r for r in index_records(root) if r.format == "wfdb"]
    kit.part_names(folds, "record_identity_probe")
    reasons: dict[str, str | None] = {}  # every record in order; None: a candidate class
    sources: list[tuple[RecordInfo, str]] = []
    for info in records:
        rel = str(Path(info.path).relative_to(root.absolute())) if root.is_dir() else info.name
        channel = _identity_channel(info)
        if info.duration_s < min_windows * window_s:
            reasons[rel] = f"{info.duration_s:g} s is shorter than {min_windows} windows"
        elif channel is None:
            reasons[rel] = "no ECG lead"
        else:
            reasons[rel] = None
            sources.append((info, channel))
    windows, kept = kit.identity_windows(sources, window_s, stride_s, max_per_record, train_fraction, folds)
    candidates = [rel for rel, reason in reasons.items() if reason is None]
    for i, rel in enumerate(candidates):
        if i not in kept:
            reasons[rel] = "no whole window in every " + ("block" if folds else "part")
    skipped = {rel: reason for rel, reason in reasons.items() if reason is not None}
    return windows, tuple(candidates[i] for i in kept), skipped


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
    used = ", ".join(
        f"{name} ({next(w.channel for w in windows if w.label == k)})"
        for k, name in enumerate(class_names)
    )
    skip = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "none"
    split = (f"blocked cross-validation over {folds} consecutive blocks of each record" if folds
             else "first 2/3 of each record train, last 1/3 test")
    description = (f"record identity from one lead per record in slot {IDENTITY_SLOT}: {used}; "
                   f"{window_s:g} s windows, {split}; kNN with k = {IDENTITY_KNN_K}; skipped: {skip}")
    return kit.identity_probe_set(
        windows, lambda w: preprocess_window(w.record, w.start_s, window_s, [(w.channel, row)], fs, len(leads), band,
                                             clip),
        folds, class_names, description, meta={"knn_k": IDENTITY_KNN_K})
