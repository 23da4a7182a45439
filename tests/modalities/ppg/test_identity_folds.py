"""The PPG identity probe on the shared probe kit: blocked cross-validation on request (``probe_identity_folds``),
as the ECG and EEG identity probes; the default stays the fixed 2/3 vs 1/3 split."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.base import DataError
from modalities.ppg import heartpy_data_dir
from modalities.ppg.probes import ppg_channel, ppg_records, preprocess_window, probe_targets, record_identity_probe
from modalities.signals.probes import identity_windows

DEMO = {"csv_fs": 100, "fs": 64, "window_s": 8.0, "channels": ["PPG"], "band": [0.5, 8.0], "clip": 5.0}


def test_identity_folds_are_blocks_of_time() -> None:
    records = ppg_records(heartpy_data_dir(), csv_fs=100)
    ps = probe_targets({**DEMO, "probe_identity_folds": 3}, None)["record_identity"]
    assert len(ps.y_test) == 0 and ps.folds is not None and len(ps.folds) == len(ps.y_train)
    assert ps.class_names == ("data.csv", "data2.csv", "data3.csv")
    # every recording has windows in every block (data.csv: 25 s, one 8 s window per 8.3 s block)
    for k in range(3):
        assert set(ps.y_train[ps.folds == k].tolist()) == {0, 1, 2}
    assert np.bincount(ps.y_train[ps.y_train == 0]).tolist() == [3]
    # the windows are the kit's, in fold order, and lie wholly inside their block of the recording
    windows, kept = identity_windows([(r, ppg_channel(r)) for r in records], 8.0, 2.0, 120, folds=3)
    assert kept == [0, 1, 2] and len(windows) == len(ps.y_train)
    ordered = sorted(windows, key=lambda w: int(w.split[4:]))  # stable: record by record inside a fold
    for i, w in enumerate(ordered):
        k, block = int(w.split[4:]), w.record.duration_s / 3
        assert ps.folds[i] == k and ps.y_train[i] == w.label
        assert k * block <= w.start_s and w.start_s + 8.0 <= (k + 1) * block + 1e-9
    first = next(i for i, w in enumerate(ordered) if w.split == "fold1" and w.label == 2)
    np.testing.assert_array_equal(ps.x_train[first], preprocess_window(ordered[first].record, ordered[first].channel,
                                                                       ordered[first].start_s, 8.0, 64.0))
    fixed = probe_targets(DEMO, None)["record_identity"]
    assert fixed.folds is None and np.bincount(fixed.y_test).tolist() == [1, 18, 40]


def test_a_single_fold_is_refused() -> None:
    with pytest.raises(DataError, match="folds must be at least 2, got 1"):
        record_identity_probe(ppg_records(heartpy_data_dir(), csv_fs=100), folds=1)
