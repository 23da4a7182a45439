"""The default ECG probes, built when no ``--probe-data`` folder is given (every install gets them; nothing outside
the package is read): ECGSYN subjects from :mod:`modalities.ecg.simulate` drawn with :data:`PROBE_SEED`, not the
seed of the embedded training corpus, so no probe subject was seen in pretraining; simulated once into the cache
(:func:`simulated_probe_corpus`). Their labels are the simulator's own parameters:

- :func:`subject_identity_probe`: which simulated subject a window comes from (each subject has its own heart
  rate, electrical axis, wave timing and amplitudes), the record-identity probe on the simulated records.
- :func:`heart_rate_probe`: the subject's mean heart rate (the ``heart_rate_bpm`` it was simulated with) as a
  regression target, train and test on *different* subjects, so the probe must read the beat interval rather than
  recognise a subject.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet
from modalities.ecg.identity import IDENTITY_KNN_K, IDENTITY_SLOT, record_identity_probe
from modalities.ecg.inputs import DEFAULT_BAND, DEFAULT_CLIP, Band, lead_mapping, preprocess_window
from modalities.ecg.leads import LEADS_12
from modalities.signals import probes as kit
from modalities.signals.formats.wfdb import read_header

__all__ = ["HR_TRAIN_SUBJECTS", "HR_WINDOW_S", "PROBE_DURATION_S", "PROBE_FS", "PROBE_SEED", "PROBE_SUBJECTS",
           "heart_rate_probe", "simulated_probe_corpus", "subject_identity_probe"]

# Simulated probe subjects: ECGSYN seed 1001 (the embedded training corpus uses seed 0: no subject is in both),
# 24 subjects of 20 s at 500 Hz (~0.6 s of CPU each, simulated once into the cache); the first 16 subjects train the
# heart-rate probe and the other 8 test it.
PROBE_SEED = 1001
PROBE_SUBJECTS = 24
PROBE_DURATION_S = 20.0
PROBE_FS = 500
HR_TRAIN_SUBJECTS = 16
HR_WINDOW_S = 5.0  # >= 4 beats at the slowest simulated rate (50 bpm)



def simulated_probe_corpus(cache_dir: str | Path | None = None, seed: int = PROBE_SEED,
                           n_subjects: int = PROBE_SUBJECTS, duration_s: float = PROBE_DURATION_S,
                           fs: int = PROBE_FS) -> Path:
    """The simulated ECGSYN probe subjects as WFDB records with ``corpus.json`` (each subject's parameters), built
    once into ``cache_dir/probes/ecgsyn-seed<seed>`` (default ``cache_dir``: ``cache_root()/ecg``,
    :func:`modalities.signals.probes.probe_corpus_dir`) by :func:`modalities.ecg.simulate.simulate_corpus`; later
    calls only check it."""
    from modalities.ecg.simulate import simulate_corpus

    return simulate_corpus(kit.probe_corpus_dir("ecg", "ecgsyn", seed, cache_dir), n_subjects=n_subjects,
                           duration_s=duration_s, fs=fs, seed=seed)


def _corpus_subjects(root: Path) -> list[dict[str, Any]]:
    meta = kit.corpus_meta(root, "ECGSYN")
    try:
        return list(meta["subjects"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{Path(root) / 'corpus.json'}: not a simulated ECGSYN corpus ({exc})") from None


def _simulated_source(root: Path) -> str:
    return kit.simulated_source(root, "ECGSYN", "ECGSYN")


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

