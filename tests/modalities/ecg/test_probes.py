"""Probe sets from real records (the test data folder): labels against the annotation file, splits, layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import wfdb

from modalities.base import DataError, ProbeSet
from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.ecg.probes import (
    beat_class_probe,
    identity_windows,
    preprocess_window,
    probe_targets,
    record_identity_probe,
    select_beats,
)
from modalities.signals.formats.wfdb import read_header
from modalities.signals.windows import SignalWindows

FS = 500
BEAT_WINDOW_S = 2.5  # 1250 samples at 500 Hz: a whole number of 25-sample ViT patches
II = LEADS_12.index("II")


@pytest.fixture(scope="module")
def mitdb(signals_dir: Path) -> Path:
    return signals_dir / "mitdb"


@pytest.fixture(scope="module")
def beat_probe(mitdb: Path) -> ProbeSet:
    return beat_class_probe(mitdb, fs=FS, window_s=BEAT_WINDOW_S, seed=0)


@pytest.fixture(scope="module")
def selection(mitdb: Path):
    return select_beats(mitdb / "100", window_s=BEAT_WINDOW_S, seed=0)


@pytest.fixture(scope="module")
def annotations(mitdb: Path) -> dict[int, str]:
    ann = wfdb.rdann(str(mitdb / "100"), "atr")
    return dict(zip(ann.sample.tolist(), ann.symbol))


@pytest.fixture(scope="module")
def identity_probe(signals_dir: Path) -> ProbeSet:
    return record_identity_probe(signals_dir, fs=FS, window_s=10.0, stride_s=5.0, max_per_record=40)


# ------------------------------------------------------------------------------------ beat class


def test_beat_probe_shapes(beat_probe: ProbeSet) -> None:
    t = int(round(BEAT_WINDOW_S * FS))
    assert beat_probe.x_train.dtype == np.float32 and beat_probe.x_test.dtype == np.float32
    assert beat_probe.y_train.dtype == np.int64 and beat_probe.y_test.dtype == np.int64
    assert beat_probe.x_train.shape == (len(beat_probe.y_train), 12, t)
    assert beat_probe.x_test.shape == (len(beat_probe.y_test), 12, t)
    assert beat_probe.class_names == ("N", "A")
    assert beat_probe.task == "classification"
    assert np.isfinite(beat_probe.x_train).all() and np.abs(beat_probe.x_train).max() <= 5.0


def test_beat_classes_and_counts(beat_probe: ProbeSet, annotations: dict[int, str]) -> None:
    counts = Counter(annotations.values())
    assert counts["N"] == 2239 and counts["A"] == 33 and counts["V"] == 1
    train, test = np.bincount(beat_probe.y_train), np.bincount(beat_probe.y_test)
    assert train[0] == 300 and test[0] == 150  # N subsampled to the caps
    assert train[1] >= 15 and test[1] >= 8  # A: all beats with a window on one side of the split
    assert train[1] + test[1] <= 33
    assert "V (1)" in beat_probe.description  # the single V beat is dropped and said so


def test_beat_labels_equal_annotation_symbols(
    beat_probe: ProbeSet, selection, annotations: dict[int, str]
) -> None:
    names = selection.class_names
    for samples, labels, y in (
        (selection.train_samples, selection.train_labels, beat_probe.y_train),
        (selection.test_samples, selection.test_labels, beat_probe.y_test),
    ):
        np.testing.assert_array_equal(labels, y)
        for s, label in zip(samples.tolist(), labels.tolist()):
            assert annotations[s] == names[label]


def test_all_a_beats_used_and_n_windows_are_pure(selection, annotations: dict[int, str]) -> None:
    fs_rec = 360.0
    half = BEAT_WINDOW_S / 2
    split = selection.split_s
    duration = 650000 / fs_rec
    a_whole = [
        s for s, sym in annotations.items()
        if sym == "A" and ((s / fs_rec - half >= 0 and s / fs_rec + half <= split)
                           or (s / fs_rec - half >= split and s / fs_rec + half <= duration))
    ]
    used = np.concatenate([selection.train_samples, selection.test_samples])
    labels = np.concatenate([selection.train_labels, selection.test_labels])
    assert sorted(used[labels == 1].tolist()) == sorted(a_whole)
    beat_samples = np.array(sorted(annotations))
    for s in used[labels == 0]:
        inside = beat_samples[np.abs(beat_samples / fs_rec - s / fs_rec) <= half]
        assert {annotations[int(b)] for b in inside} == {"N"}


def test_beat_split_never_overlaps(selection) -> None:
    half = BEAT_WINDOW_S / 2
    fs_rec = selection.record.fs
    train_end = (selection.train_samples / fs_rec + half).max()
    test_start = (selection.test_samples / fs_rec - half).min()
    assert train_end <= selection.split_s <= test_start
    assert selection.split_s == pytest.approx(0.7 * 650000 / 360.0)


def test_beat_windows_are_centred_on_the_beat(beat_probe: ProbeSet) -> None:
    """The QRS of the labelled beat is the largest deflection near the middle of its window."""
    x = beat_probe.x_train[beat_probe.y_train == 0, II]
    t = x.shape[1]
    centre = np.abs(x[:, t // 2 - 40 : t // 2 + 40]).max(axis=1)
    edges = np.abs(x[:, : t // 2 - 200]).max(axis=1)
    assert np.mean(centre >= 0.8 * edges) > 0.9


def test_beat_probe_leads_follow_the_aliases(beat_probe: ProbeSet) -> None:
    filled = np.flatnonzero(np.abs(beat_probe.x_train).sum(axis=(0, 2)) > 0)
    assert [LEADS_12[i] for i in filled] == ["II", "V5"]  # MLII -> II, V5 -> V5


def test_beat_subsampling_depends_on_seed(mitdb: Path, selection) -> None:
    other = select_beats(mitdb / "100", window_s=BEAT_WINDOW_S, seed=1)
    np.testing.assert_array_equal(other.train_samples[other.train_labels == 1],
                                  selection.train_samples[selection.train_labels == 1])
    assert set(other.train_samples.tolist()) != set(selection.train_samples.tolist())


def test_preprocessing_matches_signal_windows(mitdb: Path) -> None:
    """A probe input equals the SignalWindows item over the same window, bit for bit."""
    info = read_header(mitdb / "100")
    ds = SignalWindows([info], channels=LEADS_12, fs=FS, window_s=BEAT_WINDOW_S, channel_aliases=lead_alias,
                       random_crop=False)
    mapping = [("MLII", II), ("V5", LEADS_12.index("V5"))]
    for index in (0, 7, 123):
        item = ds[index]
        mine = preprocess_window(info, item["start_s"], BEAT_WINDOW_S, mapping, FS)
        np.testing.assert_array_equal(mine, item["signal"].numpy())


# -------------------------------------------------------------------------------------- identity


def test_identity_probe_layout(identity_probe: ProbeSet) -> None:
    assert identity_probe.x_train.dtype == np.float32 and identity_probe.y_train.dtype == np.int64
    assert identity_probe.x_train.shape[1:] == (12, 5000) and identity_probe.x_test.shape[1:] == (12, 5000)
    assert identity_probe.class_names == (
        "challenge2015/a103l", "mimicdb/03700181", "mitdb/100", "ptbdb/s0010_re",
    )
    assert "macecgdb/test01_00s" in identity_probe.description  # 8 s: skipped, and said so
    for x in (identity_probe.x_train, identity_probe.x_test):
        others = np.delete(x, II, axis=1)
        assert not others.any()  # only the II slot carries signal
        assert (x[:, II].std(axis=1) > 0.5).all()  # and it is filled and z-scored in every window
    assert set(identity_probe.y_train.tolist()) == set(identity_probe.y_test.tolist()) == {0, 1, 2, 3}


def test_identity_uses_one_lead_ii_like_channel_per_record(signals_dir: Path) -> None:
    windows, names, skipped = identity_windows(signals_dir, window_s=10.0, stride_s=5.0, max_per_record=40)
    channel = {names[w.label]: w.channel for w in windows}
    assert channel == {
        "challenge2015/a103l": "II", "mimicdb/03700181": "MCL1", "mitdb/100": "MLII", "ptbdb/s0010_re": "ii",
    }
    assert "macecgdb/test01_00s" in skipped


def test_identity_split_never_overlaps(signals_dir: Path) -> None:
    windows, names, _ = identity_windows(signals_dir, window_s=10.0, stride_s=5.0, max_per_record=40)
    for label, name in enumerate(names):
        mine = [w for w in windows if w.label == label]
        train = [w.start_s for w in mine if w.split == "train"]
        test = [w.start_s for w in mine if w.split == "test"]
        assert train and test and len(mine) <= 40
        duration = mine[0].record.duration_s
        assert max(train) + 10.0 <= 2 / 3 * duration + 1e-9 <= min(test) + 1e-9
        assert max(test) + 10.0 <= duration + 1e-9
        assert len(train) >= len(test)


def test_identity_probe_input_is_the_record_window(identity_probe: ProbeSet, signals_dir: Path) -> None:
    """Train window 0 of record 0 is the preprocessed first 10 s of its chosen channel."""
    windows, _, _ = identity_windows(signals_dir, window_s=10.0, stride_s=5.0, max_per_record=40)
    first = next(w for w in windows if w.split == "train")
    expected = preprocess_window(first.record, first.start_s, 10.0, [(first.channel, II)], FS)
    np.testing.assert_array_equal(identity_probe.x_train[0], expected)
    raw = wfdb.rdrecord(first.record.path, sampto=int(10 * first.record.fs),
                        channel_names=[first.channel]).p_signal[:, 0]
    resampled = np.interp(np.arange(5000) / FS, np.arange(raw.size) / first.record.fs, raw)
    # Same waveform up to the band-pass: correlation of first differences (high-pass) is high.
    r = np.corrcoef(np.diff(resampled), np.diff(expected[II]))[0, 1]
    assert r > 0.8


# ---------------------------------------------------------------------------------- probe_targets


def test_probe_targets_on_shared_data(signals_dir: Path) -> None:
    probes = probe_targets({"fs": 250, "window_s": 10.0, "probe_window_s": 4.0}, None, signals_root=signals_dir)
    assert set(probes) == {"beat_class", "record_identity"}
    assert probes["record_identity"].x_train.shape[1:] == (12, 1000)
    default = probe_targets({"fs": 500, "window_s": 10.0}, None, signals_root=signals_dir)["record_identity"]
    assert default.x_train.shape[1:] == (12, 1250)  # 2.5 s: whole 25-sample patches
    # blocked cross-validation over thirds: every window is a test window once (27 from the 38 s PTB record, which
    # has 9 test windows in the fixed split)
    assert len(default.y_test) == 0 and np.bincount(default.folds).tolist() == [129, 129, 129]
    assert np.bincount(default.y_train).tolist() == [120, 120, 120, 27]
    fixed = probe_targets({"fs": 500, "probe_identity_folds": None}, None, signals_root=signals_dir)["record_identity"]
    assert fixed.folds is None and np.bincount(fixed.y_test).min() >= 9
    # records differ 4.4-fold in window count: identity kNN takes the nearest window, no vote; beat class keeps the
    # library's balanced 5-vote
    assert default.meta["knn_k"] == fixed.meta["knn_k"] == 1
    assert "knn_k" not in probes["beat_class"].meta
    assert probes["beat_class"].x_train.shape[1:] == (12, int(round(BEAT_WINDOW_S * 250)))


def test_probe_targets_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.probe_data: .*nowhere is not a folder"):
        probe_targets({"fs": FS, "window_s": 10.0}, None, signals_root=tmp_path / "nowhere")
    # a folder without ECG records: no probe (the simulated ones are only for no folder at all)
    assert probe_targets({"fs": FS, "window_s": 10.0}, None, signals_root=tmp_path) == {}


def test_identity_folds_are_blocks_of_time(signals_dir: Path) -> None:
    """Under blocked cross-validation every window lies wholly inside one third of its record, each block of
    a record holds about a third of its windows, and the windows are read exactly as in the fixed split."""
    windows, names, _ = identity_windows(signals_dir, window_s=10.0, stride_s=5.0, max_per_record=39, folds=3)
    for label in range(len(names)):
        mine = [w for w in windows if w.label == label]
        third = mine[0].record.duration_s / 3
        for w in mine:
            k = int(w.split.removeprefix("fold"))
            assert k * third - 1e-9 <= w.start_s and w.start_s + 10.0 <= (k + 1) * third + 1e-9
        counts = [sum(w.split == f"fold{k}" for w in mine) for k in range(3)]
        assert max(counts) <= 13 and min(counts) >= 1
    folded = record_identity_probe(signals_dir, fs=FS, window_s=10.0, stride_s=5.0, max_per_record=39, folds=3)
    assert len(folded.y_test) == 0 and len(folded.folds) == len(folded.y_train) == len(windows)
    first = next(w for w in windows if w.split == "fold1")
    i = windows.index(first)
    order = sorted(range(len(windows)), key=lambda j: int(windows[j].split[4:]))  # the probe stacks fold by fold
    row = order.index(i)
    assert folded.folds[row] == 1 and folded.y_train[row] == first.label
    np.testing.assert_array_equal(folded.x_train[row],
                                  preprocess_window(first.record, first.start_s, 10.0, [(first.channel, II)], FS))
    with pytest.raises(DataError, match="folds must be at least 2, got 1"):
        identity_windows(signals_dir, folds=1)
