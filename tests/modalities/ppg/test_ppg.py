"""PPG modality: embedded default, dataset, heart-rate labels and probes on real recordings."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import torch

import modalities
from modalities.base import DataError
from modalities.ppg import HEARTPY_FILES, build_dataset, default_data, heartpy_data_dir
from modalities.ppg.probes import (heart_rate_bpm, ppg_channel, ppg_records, preprocess_window, probe_targets,
                                   probe_windows)
from modalities.signals.index import index_records
from modalities.signals.resampled import read_window_resampled

DEMO = {"csv_fs": 100, "fs": 64, "window_s": 8.0, "channels": ["PPG"], "band": [0.5, 8.0], "clip": 5.0,
        "val_fraction": 0.1, "view_source": "record"}


def test_registered():
    assert "ppg" in modalities.names()
    m = modalities.get("ppg")
    assert m.sample_kind == "signal" and m.view_augmentations and m.recipe.is_file()


def test_default_data_is_the_heartpy_package_files(tmp_path):
    out = default_data(tmp_path)
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(HEARTPY_FILES)
    for name in HEARTPY_FILES:
        assert filecmp.cmp(out / name, heartpy_data_dir() / name, shallow=False)
    assert default_data(tmp_path) == out  # idempotent
    records = ppg_records(out, csv_fs=100)
    durations = {r.name: round(r.duration_s, 1) for r in records}
    assert durations == {"data": 24.8, "data2": 128.2, "data3": 681.9}
    assert all(ppg_channel(r) is not None for r in records)


def test_dataset_items_and_record_views(tmp_path):
    path = default_data(tmp_path)
    ds = build_dataset({**DEMO, "path": str(path)}, "train", views=2)
    item = ds[3, 11]
    assert item["signal"].shape == (1, 512) and item["views"].shape == (2, 1, 512)
    assert item["subject"] in {"data", "data2", "data3"}
    x = item["signal"][0].numpy()
    assert abs(x.mean()) < 0.2 and 0.8 < x.std() < 1.2  # z-scored (clip at 5 keeps it near 1)
    # view_source=record: each view is its own segment of the record, not an augmentation of the item's window
    assert not torch.allclose(item["views"][0], item["views"][1])
    again = ds[3, 11]
    assert torch.equal(again["views"], item["views"])  # every random choice comes from the seed


def test_bad_input_is_one_line(signals_dir, tmp_path):
    with pytest.raises(DataError, match="data.path"):
        build_dataset({**DEMO, "path": None}, "train")
    with pytest.raises(DataError, match="data.channels"):
        build_dataset({**DEMO, "path": str(signals_dir / "ppg_heartpy"), "channels": ["ECG"]}, "train")
    with pytest.raises(DataError, match="no record has a PPG channel"):
        build_dataset({**DEMO, "path": str(signals_dir / "mitdb")}, "train")
    with pytest.raises(DataError, match="augment.p_cutout"):
        build_dataset({**DEMO, "path": str(signals_dir / "ppg_heartpy"), "augment": {"p_cutout": 2}}, "train", 2)


def test_ppg_channel_of_real_records(signals_dir):
    assert ppg_channel(index_records(signals_dir / "challenge2015" / "a103l.hea")[0]) == "PLETH"
    assert ppg_channel(index_records(signals_dir / "mitdb" / "100.hea")[0]) is None
    heartpy = {r.name: ppg_channel(r) for r in ppg_records(signals_dir / "ppg_heartpy", csv_fs=100)}
    assert heartpy == {"data": "value", "data2": "hr", "data3": "hr"}


def test_heart_rate_from_ppg_matches_the_ecg_of_the_same_seconds(signals_dir):
    """Independent check of the label: on a103l the PPG heart rate of a window equals the rate of the R peaks
    of the simultaneous ECG lead II (NeuroKit2 ecg_peaks) to within 2 bpm."""
    import neurokit2 as nk

    info = index_records(signals_dir / "challenge2015" / "a103l.hea")[0]
    checked = 0
    for start in (10.0, 60.0, 120.0, 250.0):
        x = preprocess_window(info, "PLETH", start, 8.0, 64.0)
        hr_ppg = heart_rate_bpm(x[0], 64.0)
        ecg = read_window_resampled(info, start, 8.0, ["II"], 250.0)[0]
        _, peaks = nk.ecg_peaks(nk.ecg_clean(ecg, sampling_rate=250), sampling_rate=250)
        rr = np.diff(peaks["ECG_R_Peaks"]) / 250.0
        hr_ecg = 60.0 / np.median(rr)
        if hr_ppg is not None:
            checked += 1
            assert hr_ppg == pytest.approx(hr_ecg, abs=2.0), (start, hr_ppg, hr_ecg)
    assert checked >= 3


def test_heart_rate_rejects_windows_without_a_pulse():
    rng = np.random.default_rng(0)
    assert heart_rate_bpm(np.zeros(512), 64.0) is None
    assert heart_rate_bpm(rng.standard_normal(512), 64.0) is None
    t = np.arange(512) / 64.0
    assert heart_rate_bpm(np.sin(2 * np.pi * 1.25 * t), 64.0) == pytest.approx(75.0, abs=1.0)  # 1.25 Hz pulse


def test_probe_targets_on_real_recordings(signals_dir):
    probes = probe_targets(DEMO, None, signals_root=signals_dir)
    assert set(probes) == {"heart_rate", "record_identity"}
    hr, ident = probes["heart_rate"], probes["record_identity"]
    assert hr.task == "regression" and ident.task == "classification"
    assert hr.x_train.shape[1:] == (1, 512) and len(hr.x_train) > 100 and len(hr.x_test) > 50
    assert 40 < hr.y_train.min() and hr.y_train.max() < 160
    assert ident.class_names == ("ppg_heartpy/data.csv", "ppg_heartpy/data2.csv", "ppg_heartpy/data3.csv",
                                 "challenge2015/a103l")
    assert set(np.unique(ident.y_test)) == set(range(4)) == set(np.unique(ident.y_train))
    # the ICU record beats at ~128 bpm, HeartPy's recordings at 55-105 bpm: both show up in the labels
    assert hr.y_test.max() > 120 and hr.y_test.min() < 70
    # record index of every test window, for the within-record correlation: a103l's windows are the ~126 bpm ones
    groups = hr.meta["test_groups"]
    assert groups.shape == hr.y_test.shape and set(np.unique(groups)) <= set(range(4))
    assert np.all(hr.y_test[groups == 3] > 115) and np.all(hr.y_test[groups != 3] < 115)


def test_probe_windows_never_cross_the_split(signals_dir):
    records = ppg_records(signals_dir / "ppg_heartpy", csv_fs=100)
    for w in probe_windows(records, 8.0, 2.0):
        split = 2 / 3 * w.record.duration_s
        if w.split == "train":
            assert w.start_s + 8.0 <= split + 1e-9
        else:
            assert w.start_s >= split - 1e-9 and w.start_s + 8.0 <= w.record.duration_s + 1e-9


@pytest.mark.slow
def test_evaluate_report_has_the_heart_rate_regression_table(tmp_path, run_cache):
    """``python -m pretrain evaluate`` on a PPG run: the report shows the regression table (R^2, MAE) next to the
    classification one, and probes.json carries both kinds of rows."""
    import json

    import models
    from pretrain import config as C
    from pretrain.evaluate import evaluate_run

    run = tmp_path / "run"
    run.mkdir()
    small = {"in_channels": 1, "stages": [[1, 16, 1, 2, 5], [4, 24, 1, 4, 5]], "head_channels": 32}
    cfg = C.resolve(modalities.get("ppg").recipe, None, [], {"model": small}, demo=True)
    cfg.data = cfg.data.replace(path=str(default_data(tmp_path / "cache")))
    C.save(cfg, run / "config.yaml")
    torch.manual_seed(1)
    models.save_pretrained(models.create("efficientnet1d", **small), run / "encoder")
    (run / "metrics.csv").write_text("step,loss\n1,0.0\n2,0.0\n3,0.0\n")  # a run that learned nothing
    report = evaluate_run(run).read_text()
    assert f"- training data: `{cfg.data['path']}`" in report
    assert "- loss: 0 (step 1) -> 0 (step 3); **constant: every logged loss is exactly 0.0**" in report
    assert "## Regression probes" in report and "| heart_rate | pretrained |" in report
    assert "| record_identity | random init |" in report
    rows = json.loads((run / "probes.json").read_text())
    hr = [r for r in rows if r["probe"] == "heart_rate"]
    assert len(hr) == 2 and all(r["task"] == "regression" and "ridge_r2" in r and "knn_mae" in r for r in hr)
    assert all(-1.0 <= r["ridge_within_r"] <= 1.0 and -1.0 <= r["knn_within_r"] <= 1.0 for r in hr)
    assert "ridge r within" in report


def test_paired_ecg_channel_for_the_cross_modal_objective(signals_dir):
    """data.channels [PPG, ECG] on a103l: row 0 is PLETH, row 1 the first ECG lead (II), read from the same
    seconds."""
    ds = build_dataset({**DEMO, "path": str(signals_dir / "challenge2015"), "channels": ["PPG", "ECG"]}, "val")
    item = ds[0]
    assert item["signal"].shape == (2, 512)
    info = index_records(signals_dir / "challenge2015" / "a103l.hea")[0]
    expected = preprocess_window(info, "PLETH", item["start_s"], 8.0, 64.0)
    assert torch.allclose(item["signal"][0], torch.from_numpy(expected[0]), atol=1e-5)
    assert float(item["signal"][1].std()) > 0.5  # the ECG row is filled
