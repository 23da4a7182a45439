"""The PPG probes of a plain install: the HeartPy recordings inside the installed package, no folder outside it;
``data.probe_data`` selects the real recordings of a folder instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalities.base import DataError
from modalities.ppg import heartpy_data_dir
from modalities.ppg.probes import heart_rate_bpm, ppg_records, preprocess_window, probe_targets, probe_windows

DEMO = {"csv_fs": 100, "fs": 64, "window_s": 8.0, "channels": ["PPG"], "band": [0.5, 8.0], "clip": 5.0}


@pytest.fixture(scope="module")
def default_probes():
    return probe_targets(DEMO, None)


def test_default_probes_are_the_installed_heartpy_recordings(default_probes) -> None:
    assert set(default_probes) == {"heart_rate", "record_identity"}
    for ps in default_probes.values():
        assert ps.source == "installed package heartpy (heartpy/data: 3 example recordings)"
    ident, hr = default_probes["record_identity"], default_probes["heart_rate"]
    assert ident.class_names == ("data.csv", "data2.csv", "data3.csv")
    assert set(np.unique(ident.y_train)) == set(np.unique(ident.y_test)) == {0, 1, 2}
    # windows of 8 s every 2 s, at most 80 train / 40 test per recording (25 s, 128 s and 682 s long)
    assert np.bincount(ident.y_train).tolist() == [5, 39, 80] and np.bincount(ident.y_test).tolist() == [1, 18, 40]
    assert hr.x_train.shape[1:] == (1, 512) and len(hr.y_train) > 90 and len(hr.y_test) > 50
    # HeartPy's participants beat at ~60 (data2) and ~95 bpm (data3)
    groups = hr.meta["test_groups"]
    assert 55 < hr.y_test[groups == 1].mean() < 66 and 85 < hr.y_test[groups == 2].mean() < 105


def test_heart_rate_labels_are_the_window_peak_rate(default_probes) -> None:
    """Every train window of data2.csv, read from the installed file: its label is the rate Elgendi peaks give on it
    (a real function of the signal), and windows without a measurable rate are left
    out."""
    records = ppg_records(heartpy_data_dir(), csv_fs=100)
    data2 = next(r for r in records if r.name == "data2")
    hr = default_probes["heart_rate"]
    kept = 0
    for w in probe_windows(records, 8.0, 2.0):
        if w.record.name != "data2" or w.split != "train":
            continue
        x = preprocess_window(data2, w.channel, w.start_s, 8.0, 64.0)
        label = heart_rate_bpm(x[0], 64.0)
        match = [i for i in range(len(hr.x_train)) if np.array_equal(hr.x_train[i], x)]
        if label is None:
            assert match == []
        else:
            kept += 1
            assert len(match) == 1 and hr.y_train[match[0]] == pytest.approx(label) and 50 < label < 110
    assert kept >= 20


def test_probe_data_gives_the_real_recording_probes(signals_dir: Path) -> None:
    probes = probe_targets({**DEMO, "probe_data": str(signals_dir)}, None)
    assert set(probes) == {"heart_rate", "record_identity"}
    assert all(ps.source == f"--probe-data {signals_dir.absolute()}" for ps in probes.values())
    assert probes["record_identity"].class_names == ("ppg_heartpy/data.csv", "ppg_heartpy/data2.csv",
                                                     "ppg_heartpy/data3.csv", "challenge2015/a103l")


def test_missing_probe_data_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data\.probe_data: .*nowhere is not a folder$"):
        probe_targets({**DEMO, "probe_data": str(tmp_path / "nowhere")}, None)
    assert probe_targets({**DEMO, "probe_data": str(tmp_path)}, None) == {}  # a folder without PPG: no probe
