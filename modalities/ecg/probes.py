"""Labelled ECG probe sets for the label-free-vs-labelled report: simulated by default, real with ``--probe-data``.

Inputs are built exactly like pretraining windows of
:class:`~modalities.signals.windows.SignalWindows` (:mod:`modalities.ecg.inputs`): the record's channels are mapped
to canonical leads with :func:`~modalities.ecg.leads.lead_alias`, read and resampled to ``fs``, band-passed on the
filled leads, z-scored per lead and clipped (:func:`modalities.signals.preprocess.preprocess_window`); leads a
record lacks stay zero.

Probes on real annotated records (a folder given as ``data.probe_data`` / ``--probe-data``):

- :func:`~modalities.ecg.beats.beat_class_probe`: normal (N) vs atrial premature (A) beats of MIT-BIH record
  ``mitdb/100``.
- :func:`~modalities.ecg.identity.record_identity_probe`: which record a window comes from, from one lead per
  record, so the probe measures morphology rather than which lead slots are filled.

Default probes, built when no folder is given (every install gets them; nothing outside the package is read):
ECGSYN subjects from :mod:`modalities.ecg.simulate` drawn with :data:`PROBE_SEED`, not the seed of the embedded
training corpus, so no probe subject was seen in pretraining; simulated once into the cache
(:func:`~modalities.ecg.simulated_probes.simulated_probe_corpus`). Their labels are the simulator's own parameters:

- :func:`~modalities.ecg.simulated_probes.subject_identity_probe`: which simulated subject a window comes from
  (each subject has its own heart rate, electrical axis, wave timing and amplitudes), the record-identity probe on
  the simulated records.
- :func:`~modalities.ecg.simulated_probes.heart_rate_probe`: the subject's mean heart rate (the ``heart_rate_bpm``
  it was simulated with) as a regression target, train and test on *different* subjects, so the probe must read
  the beat interval rather than recognise a subject.

Both leave room above a random encoder (measured at fs 500, 2 seeds): a random ``vit1d_xs`` scores identity
kNN 0.24-0.26 balanced accuracy (chance 0.04) and heart-rate ridge R^2 -0.53 to -0.33, the log-spectrum of lead II's
rectified signal 0.57 and 0.58.

:func:`probe_targets` picks one set or the other. Beat class uses a fixed split by time (train first, test last);
identity, by default, blocked cross-validation over consecutive thirds of every record (every window is a test
window once), or the same fixed split (the shared kit :mod:`modalities.signals.probes`). No window crosses a split
or block edge, so train and test windows never share a sample. Identity's kNN takes the single nearest training
window (:data:`IDENTITY_KNN_K`), beat class the library's class-balanced 5-vote.

This module holds :func:`probe_targets` and re-exports the probe builders of :mod:`modalities.ecg.inputs`,
:mod:`modalities.ecg.beats`, :mod:`modalities.ecg.identity` and :mod:`modalities.ecg.simulated_probes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import ProbeSet, probe_folder
from modalities.ecg.beats import BEAT_SYMBOLS, MIN_CLASS_COUNT, BeatSelection, beat_class_probe, select_beats
from modalities.ecg.identity import (IDENTITY_KNN_K, IDENTITY_LEAD_PREFERENCE, IDENTITY_SLOT, IdentityWindow,
                                     identity_windows, record_identity_probe)
from modalities.ecg.inputs import DEFAULT_BAND, DEFAULT_CLIP, Band, lead_mapping, preprocess_window
from modalities.ecg.options import EcgOptions
from modalities.ecg.simulated_probes import (HR_TRAIN_SUBJECTS, HR_WINDOW_S, PROBE_DURATION_S, PROBE_FS, PROBE_SEED,
                                             PROBE_SUBJECTS, heart_rate_probe, simulated_probe_corpus,
                                             subject_identity_probe)

__all__ = [
    "BEAT_SYMBOLS",
    "Band",
    "BeatSelection",
    "DEFAULT_BAND",
    "DEFAULT_CLIP",
    "HR_TRAIN_SUBJECTS",
    "HR_WINDOW_S",
    "IDENTITY_KNN_K",
    "IDENTITY_LEAD_PREFERENCE",
    "IDENTITY_SLOT",
    "IdentityWindow",
    "MIN_CLASS_COUNT",
    "PROBE_DURATION_S",
    "PROBE_FS",
    "PROBE_SEED",
    "PROBE_SUBJECTS",
    "beat_class_probe",
    "heart_rate_probe",
    "identity_windows",
    "lead_mapping",
    "preprocess_window",
    "probe_targets",
    "record_identity_probe",
    "select_beats",
    "simulated_probe_corpus",
    "subject_identity_probe",
]


def probe_targets(
    data_cfg: Mapping[str, Any], data_path: Path | None, signals_root: Path | None = None
) -> dict[str, ProbeSet]:
    """The ECG probes: on real records when a folder is given, on simulated subjects otherwise.

    Folder (``signals_root``, else ``data_cfg["probe_data"]``, the CLI's ``--probe-data``):
    ``{"beat_class": ..., "record_identity": ...}`` on the annotated WFDB records in it (beat class needs
    ``mitdb/100.hea`` + ``.atr``; identity every record with an ECG lead); a probe whose records are missing is left
    out. No folder: ``{"subject_identity": ..., "heart_rate": ...}`` on the ECGSYN probe subjects
    (:func:`simulated_probe_corpus`, cached under ``cache_root()/ecg``).

    ``data_cfg`` (:class:`~modalities.ecg.options.EcgOptions`, or a mapping of some of its options) gives ``fs``,
    ``leads``, ``band`` and ``clip``, so probe inputs match the pretraining inputs, ``probe_window_s`` /
    ``probe_stride_s`` (identity windows) and ``probe_identity_folds`` (null or 0 for the fixed split).
    ``data_path`` is not used.
    Every set's ``source`` says where its data came from.
    """
    root = probe_folder(data_cfg, signals_root)
    opts = EcgOptions.of(data_cfg)
    # Identity windows of 2.5 s (1.25 s stride) give every record, even the 38 s PTB one, >= 9 test windows;
    # with 10 s windows the test set was 13/13/13/1 and one window moved balanced accuracy by 0.25.
    fs, window_s, stride_s, leads = opts.fs, opts.probe_window_s, opts.probe_stride(), tuple(opts.leads)
    band, clip, folds = opts.band, opts.clip, opts.probe_identity_folds or None
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
