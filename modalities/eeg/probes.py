"""Labelled EEG probe sets for the label-free-vs-labelled report: simulated by default, real with ``--probe-data``.

Probe inputs are built like pretraining windows (:func:`~modalities.eeg.recordings.read_eeg_window`: average
re-reference, 50/60 Hz notch, band-pass, resampling to ``fs``, per-channel z-score and clip).

Default probe, built when no folder is given (every install gets it; nothing outside the package is read):

- :func:`simulated_motor_imagery_probe`: rest (``T0``) vs left-hand (``T1``) vs right-hand (``T2``) imagery on
  runs of the simulator :mod:`modalities.eeg.simulate`, drawn with :data:`PROBE_SEED` (the embedded training
  corpus uses seed 0, so no probe subject was seen in pretraining) and simulated once into the cache
  (:func:`simulated_probe_corpus`). The labels are the simulator's own event schedule; imagery lowers mu/beta power
  over the contralateral sensorimotor cortex by 50-70 % and the ipsilateral by 10-20 %, so left vs right needs the
  lateralisation, which the per-channel features (``embedding="channels"``) keep. It leaves room above a random
  encoder (measured, 2 seeds): a random ``eegformer_xs`` scores kNN 0.50-0.56 and logistic 0.64-0.67 balanced
  accuracy (chance 0.33), log band power per channel 0.54 and 0.62.

Probes on real recordings (a folder given as ``data.probe_data`` / ``--probe-data``, laid out as the test data:
``eeg/test_edf_overlapping_annotations.edf``, other EEG files under ``eeg/``, ``sleep/*Hz.txt``):

- :func:`motor_imagery_probe`: rest (``T0``) vs movement (``T1`` or ``T2``) from the first ``window_s`` seconds
  of every annotated event of one PhysioNet EEG Motor Movement/Imagery run, on the seven sensorimotor channels
  :data:`MOTOR_CHANNELS`. Why this task: that run has 19 rest, 10 left-fist and 9 right-fist events;
  left vs right needs the *lateralisation* of mu/beta power, which an encoder that pools over channels cannot
  keep, and 3-way classification leaves 3-4 test events per movement class. Rest vs movement (19 vs 19 events)
  is the task the data can measure. Rest spans last 1.375 s here, so windows are 1.25 s (5 tokens of 0.25 s).
  The probes read the per-channel features in montage order (``embedding="channels"``), not the channel mean.
- :func:`record_identity_probe`: which recording a single-channel window comes from: the motor-imagery run
  (``Cz``), the resting eyes-open FIF (``Cz-A2``) and the two single-channel sleep EEG text files (N2 with
  spindles, N3). Montages differ, so each recording contributes one channel (one central channel where it has
  one) and the probe input has C = 1, which the channel-independent encoder reads like any other channel.

Both are split by time inside each recording, and no window crosses a split, so a training and a test window
never share a sample. The data are small: the motor-imagery run holds 38 events, and the two sleep recordings
(15 s and 30 s) give 4 and 9 windows to a 1/3 test part, so under a fixed 2/3 vs 1/3 split one window moved
balanced accuracy by 0.06-0.08 and pretrained-vs-random differences were noise. By default both probes are
therefore cross-validated over consecutive blocks of time (``folds``: 6 blocks of the motor-imagery run, 3 blocks
of every recording for identity; :func:`pretrain.evaluate.blocked_cv_scores`): every window is predicted once, by
probes fit on the other blocks. ``folds=None`` gives the fixed split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from modalities.base import DataError, ProbeSet, probe_folder
from modalities.eeg.options import EegOptions
from modalities.eeg.recordings import EEGRecord, eeg_record, index_eeg, read_eeg_window, read_events
from modalities.signals import probes as kit
from modalities.signals.index import index_records

__all__ = ["BANDS", "MOTOR_CHANNELS", "PROBE_SEED", "band_power_features", "motor_imagery_probe", "probe_targets",
           "record_identity_probe", "simulated_motor_imagery_probe", "simulated_probe_corpus", "text_record"]

MOTOR_CHANNELS = ("FC3", "FC4", "C3", "Cz", "C4", "CP3", "CP4")
MOTOR_RUN = "eeg/test_edf_overlapping_annotations.edf"
IDENTITY_PREFERENCE = ("Cz", "C3", "C4", "Fz", "Pz")
_TEXT_RATE = re.compile(r"_(\d+(?:\.\d+)?)Hz", re.I)


BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}


def band_power_features(x: np.ndarray, fs: float, bands: Mapping[str, tuple[float, float]] = BANDS) -> np.ndarray:
    """The classical EEG reference for the probes: log mean power of every channel in each band (Welch, one
    Hamming segment the length of the window, ``mne.time_frequency.psd_array_welch``) -> float64[N, C * len(bands)],
    band-major. The probes read these like an encoder's embeddings, which gives the score hand-made spectral
    features reach on the same windows and folds."""
    from mne.time_frequency import psd_array_welch

    x = np.asarray(x, dtype=np.float64)
    psd, freqs = psd_array_welch(x, sfreq=fs, n_fft=x.shape[-1], verbose=False)
    cols = []
    for name, (a, b) in bands.items():
        sel = (freqs >= a) & (freqs < b)
        if not sel.any():
            raise DataError(f"band_power_features: band {name} ({a}-{b} Hz) holds no frequency of a "
                            f"{x.shape[-1] / fs:g} s window")
        cols.append(np.log(psd[..., sel].mean(-1) + 1e-20))
    return np.concatenate(cols, axis=-1)


# Simulated probe runs: seed 1001 (the embedded training corpus uses seed 0), 6 subjects of 120 s (~0.1 s of CPU
# each): ~90 rest and ~85 imagery events. Windows start 0.8 s after the cue, when the ERD (0.3 s delay, 0.5 s ramp)
# is complete, and last 2 s (8 tokens of 0.25 s); rest events last >= 3.5 s, imagery 4 s.
PROBE_SEED = 1001
PROBE_SUBJECTS = 6
PROBE_DURATION_S = 120.0
SIM_OFFSET_S = 0.8
SIM_WINDOW_S = 2.0
SIM_CLASSES = ("rest (T0)", "left hand (T1)", "right hand (T2)")


def _rows(record: EEGRecord, channels: Sequence[str]) -> list[int]:
    missing = [c for c in channels if c not in record.names]
    if missing:
        raise DataError(f"{record.path}: no channel {missing[0]!r} (has {', '.join(record.names[:10])}, ...)")
    return [record.names.index(c) for c in channels]


def motor_imagery_probe(path: str | Path, fs: float = 128.0, window_s: float = 1.25, train_fraction: float = 2 / 3,
                        channels: Sequence[str] = MOTOR_CHANNELS, folds: int | None = None,
                        embedding: str = "channels", **read: Any) -> ProbeSet:
    """Rest (``T0``, class 0) vs movement (``T1``/``T2``, class 1) windows of an annotated motor-imagery run.

    One window per event: the first ``window_s`` seconds after its onset (events shorter than that are left out).
    ``folds=None``: events whose window ends by ``train_fraction`` of the run train, those starting after it test.
    ``folds=K``: the run is cut into K equal blocks of time, each event belongs to the block holding its onset, and
    every window sits in ``x_train`` with its block in ``ProbeSet.folds`` (blocked cross-validation: each event is
    predicted once by a probe fit on the other blocks; no window spans two events, so no sample is shared).
    ``embedding``: what the probes read (``ProbeSet.meta["embedding"]``, :func:`pretrain.evaluate.probe_embedding`):
    ``"channels"`` (default) the encoder's per-channel features in the order of ``channels``, concatenated, so the
    montage (which sensorimotor channel desynchronises) is kept; ``"mean"`` the encoder's ``embed``, which averages
    over channels. ``read`` passes preprocessing options (``band``, ``notch_hz``, ``reref_min_channels``,
    ``clip``) on.

    Returns:
        ProbeSet with float32 x [N, len(channels), round(window_s * fs)] and int64 labels.
    """
    if embedding not in ("channels", "mean"):
        raise DataError(f"motor-imagery probe: embedding must be 'channels' or 'mean', got {embedding!r}")
    record = index_eeg(path)[0]
    rows = _rows(record, channels)
    if folds is not None and folds < 2:
        raise DataError(f"{record.path}: motor-imagery folds must be at least 2, got {folds}")
    split_s = train_fraction * record.duration_s
    block_s = record.duration_s / folds if folds else 0.0
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    blocks: list[int] = []
    for ev in read_events(record):
        if ev.label not in ("T0", "T1", "T2") or ev.duration_s < window_s - 1e-6:
            continue
        stop = ev.onset_s + window_s
        if stop > record.duration_s:
            continue
        if folds:
            side = "train"
            blocks.append(min(int(ev.onset_s // block_s), folds - 1))
        else:
            side = "train" if stop <= split_s else "test" if ev.onset_s >= split_s else None
            if side is None:
                continue
        parts[side][0].append(read_eeg_window(record, ev.onset_s, window_s, fs, rows=rows, **read))
        parts[side][1].append(0 if ev.label == "T0" else 1)
    (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
    description = (f"{record.name}: rest vs movement from the first {window_s:g} s of each annotated event on "
                   f"{', '.join(channels)} ("
                   + ("per-channel features concatenated" if embedding == "channels" else "channel-mean features")
                   + "); ")
    if folds:
        if len(set(y_tr)) < 2:
            raise DataError(f"{record.path}: need both rest (T0) and movement (T1/T2) events")
        description += (f"{len(y_tr)} events ({np.bincount(y_tr, minlength=2).tolist()} rest, movement), blocked "
                        f"cross-validation over {folds} consecutive {block_s:.0f} s blocks")
        return ProbeSet.folded(np.stack(x_tr), y_tr, blocks, class_names=("rest (T0)", "movement (T1, T2)"),
                               description=description, meta={"embedding": embedding})
    if not all(len(set(y)) == 2 for _, y in parts.values()):
        raise DataError(f"{record.path}: need rest (T0) and movement (T1/T2) events on both sides of the "
                        f"{split_s:.0f} s split")
    counts = {side: np.bincount(y, minlength=2).tolist() for side, (_, y) in parts.items()}
    return ProbeSet(
        x_train=np.stack(x_tr), y_train=np.array(y_tr, dtype=np.int64),
        x_test=np.stack(x_te), y_test=np.array(y_te, dtype=np.int64),
        task="classification", class_names=("rest (T0)", "movement (T1, T2)"),
        description=description + f"events before {split_s:.0f} s train, after test; [rest, movement] counts {counts}",
        meta={"embedding": embedding},
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
                          train_fraction: float = 2 / 3, folds: int | None = None, **read: Any) -> ProbeSet:
    """Which recording a one-channel window comes from.

    Each recording gives its first channel named in :data:`IDENTITY_PREFERENCE` (``Cz-A2`` counts as ``Cz``),
    else its first EEG channel (a text file: its only column), as windows every ``stride_s``, at most
    ``max_per_record`` per recording, spread evenly.

    ``folds=None``: windows lie wholly in the first ``train_fraction`` of the recording (train, at most
    ``ceil(train_fraction * max_per_record)``) or in the rest (test). ``folds=K``: every recording is cut into K
    equal blocks of time, windows lie wholly inside one block (at most ``ceil(max_per_record / K)`` each), block k
    of every recording is fold k, and all windows sit in ``x_train`` with their fold in ``ProbeSet.folds``
    (blocked cross-validation; every window is predicted once).

    Returns:
        ProbeSet with float32 x [N, 1, round(window_s * fs)]; ``class_names`` are ``file:channel``.
    """
    kit.part_names(folds, "record_identity_probe")
    sources = []
    for rec in records:
        base = {n.split("-")[0]: i for i, n in reversed(list(enumerate(rec.names)))}
        sources.append((rec, next((base[c] for c in IDENTITY_PREFERENCE if c in base), 0)))
    windows, kept = kit.identity_windows(sources, window_s, stride_s, max_per_record, train_fraction, folds)
    names = [f"{Path(rec.path).name}:{rec.names[row]}" for rec, row in (sources[i] for i in kept)]
    if len(names) < 2:
        raise DataError("record_identity_probe: fewer than two recordings long enough for a window in every "
                        + ("block" if folds else "part"))
    description = f"recording identity from one channel per recording ({', '.join(names)}); {window_s:g} s windows, "
    description += (f"blocked cross-validation over {folds} consecutive blocks of each recording" if folds
                    else f"first {train_fraction:.0%} of each recording train, the rest test")
    return kit.identity_probe_set(
        windows, lambda w: read_eeg_window(w.record, w.start_s, window_s, fs, rows=[w.channel], **read), folds,
        names, description)


def simulated_probe_corpus(cache_dir: str | Path | None = None, seed: int = PROBE_SEED,
                           n_subjects: int = PROBE_SUBJECTS, duration_s: float = PROBE_DURATION_S) -> Path:
    """The simulated motor-imagery probe runs (EDF+ with annotations, ``corpus.json`` with every subject's
    parameters and events), built once into ``cache_dir/probes/eegsim-seed<seed>`` (default ``cache_dir``:
    ``cache_root()/eeg``, :func:`modalities.signals.probes.probe_corpus_dir`) by
    :func:`modalities.eeg.simulate.simulate_corpus`."""
    from modalities.eeg.simulate import simulate_corpus

    return simulate_corpus(kit.probe_corpus_dir("eeg", "eegsim", seed, cache_dir), n_subjects=n_subjects,
                           duration_s=duration_s, seed=seed)


def simulated_motor_imagery_probe(root: str | Path, fs: float = 128.0, window_s: float = SIM_WINDOW_S,
                                  offset_s: float = SIM_OFFSET_S, channels: Sequence[str] = MOTOR_CHANNELS,
                                  folds: int = 6, embedding: str = "channels", **read: Any) -> ProbeSet:
    """Rest (``T0``, class 0) vs left-hand (``T1``, 1) vs right-hand (``T2``, 2) imagery of every simulated run in
    ``root`` (EDF+ files with event annotations, as :func:`modalities.eeg.simulate.simulate_corpus` writes them).

    One window per event, ``window_s`` seconds from ``offset_s`` after its onset (events too short for it are left
    out), on ``channels``. Every run is cut into ``folds`` equal blocks of time; an event belongs to the block
    holding its onset and block k of every run is fold k (blocked cross-validation, each event predicted once by
    probes fit on the other blocks; no window spans two events). ``embedding`` and ``read`` as in
    :func:`motor_imagery_probe`.

    Returns:
        ProbeSet.folded with float32 x [N, len(channels), round(window_s * fs)], int64 labels and ``meta["runs"]``
        (the file of every window).
    """
    if embedding not in ("channels", "mean"):
        raise DataError(f"motor-imagery probe: embedding must be 'channels' or 'mean', got {embedding!r}")
    if folds < 2:
        raise DataError(f"{root}: motor-imagery folds must be at least 2, got {folds}")
    records = index_eeg(root)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    blocks: list[int] = []
    runs: list[str] = []
    labels = {"T0": 0, "T1": 1, "T2": 2}
    for record in records:
        rows = _rows(record, channels)
        block_s = record.duration_s / folds
        for ev in read_events(record):
            if ev.label not in labels or ev.duration_s < offset_s + window_s - 1e-6:
                continue
            if ev.onset_s + offset_s + window_s > record.duration_s:
                continue
            xs.append(read_eeg_window(record, ev.onset_s + offset_s, window_s, fs, rows=rows, **read))
            ys.append(labels[ev.label])
            blocks.append(min(int(ev.onset_s // block_s), folds - 1))
            runs.append(Path(record.path).name)
    counts = np.bincount(np.asarray(ys, dtype=np.int64), minlength=3) if ys else np.zeros(3, dtype=np.int64)
    if counts.min() == 0:
        raise DataError(f"{root}: need rest (T0), left (T1) and right (T2) events, found {counts.tolist()}")
    description = (f"rest vs left vs right hand imagery, {window_s:g} s from {offset_s:g} s after each cue, on "
                   f"{', '.join(channels)} ("
                   + ("per-channel features concatenated" if embedding == "channels" else "channel-mean features")
                   + f"); {len(records)} simulated runs, {counts.tolist()} rest/left/right events; blocked "
                   f"cross-validation over {folds} consecutive blocks of every run")
    return ProbeSet.folded(np.stack(xs), ys, blocks, class_names=SIM_CLASSES, description=description,
                           meta={"embedding": embedding, "runs": runs},
                           source=_simulated_source(Path(root)))


def _simulated_source(root: Path) -> str:
    return kit.simulated_source(root, "motor imagery", "EEG")


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None,
                  signals_root: Path | None = None) -> dict[str, ProbeSet]:
    """The EEG probes: on real recordings when a folder is given, on simulated runs otherwise.

    Folder (``signals_root``, else ``data_cfg["probe_data"]``, the CLI's ``--probe-data``):
    ``{"motor_imagery": ..., "record_identity": ...}`` on ``eeg/test_edf_overlapping_annotations.edf`` and the
    recordings under ``eeg/`` and ``sleep/*Hz.txt``; a probe whose recordings are missing is left out. No folder:
    ``{"motor_imagery_3class": ...}`` (:func:`simulated_motor_imagery_probe` on :func:`simulated_probe_corpus`,
    cached under ``cache_root()/eeg``).

    ``data_cfg`` (:class:`~modalities.eeg.options.EegOptions`, or a mapping of some of its options) gives ``fs``, the
    preprocessing options, ``probe_embedding`` and, for the real run, ``probe_window_s``, ``probe_folds`` and
    ``probe_identity_folds``; ``data_path`` is not used. Every set's ``source`` says where its data came from.
    """
    root = probe_folder(data_cfg, signals_root)
    opts = EegOptions.of(data_cfg)
    fs, embedding = opts.fs, opts.probe_embedding
    read = {"band": opts.band, "notch_hz": tuple(opts.notch_hz or ()), "reref_min_channels": opts.reref_min_channels,
            "clip": opts.clip}
    probes: dict[str, ProbeSet] = {}
    if root is None:
        probes["motor_imagery_3class"] = simulated_motor_imagery_probe(simulated_probe_corpus(), fs=fs,
                                                                       embedding=embedding, **read)
        return probes
    source = f"--probe-data {root}"
    if (root / MOTOR_RUN).is_file():
        probes["motor_imagery"] = motor_imagery_probe(root / MOTOR_RUN, fs=fs,
                                                      window_s=opts.probe_window_s, folds=opts.probe_folds or None,
                                                      embedding=embedding, **read)
    records = index_eeg(root / "eeg") if (root / "eeg").is_dir() else []
    records += [text_record(p) for p in sorted((root / "sleep").glob("*Hz.txt"))] if (root / "sleep").is_dir() else []
    if len(records) >= 2:
        probes["record_identity"] = record_identity_probe(
            records, fs=fs, folds=opts.probe_identity_folds or None, **read)
    for ps in probes.values():
        ps.source = source
    return probes
