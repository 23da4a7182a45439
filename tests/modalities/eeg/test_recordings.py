"""EEG reading through MNE on the bundled real files: channels, annotations, preprocessing, windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalities.base import DataError
from modalities.eeg import build_dataset
from modalities.eeg.recordings import index_eeg, preprocess, read_eeg_window, read_events
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def eeg_dir():
    return shared_data("signals/eeg")


def test_index_reads_edf_and_fif_headers(eeg_dir):
    edf, fif = sorted(index_eeg(eeg_dir), key=lambda r: r.path.endswith(".fif"))
    assert (edf.fs, len(edf.channels), edf.duration_s) == (128.0, 64, 124.0)
    assert edf.names[:3] == ("FC5", "FC3", "FC1") and "Cz" in edf.names
    assert (fif.fs, fif.names, fif.duration_s) == (200.0, ("F4-A1", "Cz-A2"), 360.0)
    assert fif.scales == (1e6, 1e6) and edf.scales[0] == 1.0  # FIF in V, this EDF in uV


def test_non_eeg_recordings_are_left_out(signals_dir):
    with pytest.raises(DataError, match="no recording with EEG channels"):
        index_eeg(signals_dir / "mitdb")


def test_edf_plus_annotations(eeg_dir):
    events = read_events(eeg_dir / "test_edf_overlapping_annotations.edf")
    counts = {label: sum(e.label == label for e in events) for label in ("T0", "T1", "T2")}
    assert counts == {"T0": 19, "T1": 10, "T2": 9}
    assert (events[1].onset_s, events[1].duration_s, events[1].label) == (1.375, 5.125, "T1")


def test_window_matches_mne_preprocessing_of_the_same_samples(eeg_dir):
    import mne
    from scipy import signal

    rec = index_eeg(eeg_dir / "data_resting_EO_200Hz_raw.fif")[0]
    x = read_eeg_window(rec, 100.0, 4.0, 128.0, band=None, notch_hz=(), clip=None)
    assert x.shape == (2, 512)
    np.testing.assert_allclose(x.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(1), 1, atol=1e-3)
    raw = mne.io.read_raw_fif(rec.path, verbose="error").get_data(start=19800, stop=21000) * 1e6
    want = signal.resample_poly(raw, 16, 25, axis=1)[:, 128:640]  # 200 -> 128 Hz, 1 s margin each side
    want = (want - want.mean(1, keepdims=True)) / want.std(1, keepdims=True)
    corr = [np.corrcoef(x[i], want[i])[0, 1] for i in range(2)]
    assert min(corr) > 0.999


def test_average_reference_and_row_selection(eeg_dir):
    rec = index_eeg(eeg_dir / "test_edf_overlapping_annotations.edf")[0]
    full = read_eeg_window(rec, 10.0, 2.0, 128.0, band=None, notch_hz=(), clip=None)
    part = read_eeg_window(rec, 10.0, 2.0, 128.0, band=None, notch_hz=(), clip=None, rows=[8, 10])
    np.testing.assert_allclose(part, full[[8, 10]], atol=1e-5)


def test_preprocessing_removes_the_common_reference_and_mains_and_keeps_alpha():
    fs = 256.0
    t = np.arange(int(20 * fs)) / fs
    rng = np.random.default_rng(0)
    alpha = np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (8, 1)))  # one rhythm per channel, different phases
    mains = np.sin(2 * np.pi * 50 * t) * np.linspace(0.2, 1.0, 8)[:, None]  # differs per channel: not a reference
    reference = 3 * np.sin(2 * np.pi * 3 * t)  # the reference electrode's activity, on every channel
    core = slice(512, -512)
    # notch only: the 50 Hz interference goes, alpha stays (without the notch the error is the mains amplitude)
    y = preprocess(alpha + mains, fs, fs, band=None, reref=False)
    assert np.abs(y[:, core] - alpha[:, core]).max() < 0.02
    assert np.abs(preprocess(alpha + mains, fs, fs, band=None, notch_hz=(), reref=False) - alpha)[:, core].max() > 0.5
    # the full chain: average reference removes the common signal (3 units), then resampling to 128 Hz
    want = (alpha - alpha.mean(0))[:, ::2]
    y = preprocess(alpha + mains + reference, fs, 128.0, band=None)
    assert np.abs(y[:, 256:-256] - want[:, 256:-256]).max() < 0.01
    y = preprocess(alpha + mains + reference, fs, 128.0, band=(0.5, 45.0))  # + the slow high-pass transient
    assert np.abs(y[:, 256:-256] - want[:, 256:-256]).max() < 0.08


def test_windows_sample_channels_from_each_recording(eeg_dir):
    cfg = {"path": str(eeg_dir), "fs": 128, "window_s": 4.0, "n_channels": 4, "band": [0.5, 45.0]}
    ds = build_dataset(cfg, "train")
    assert len(ds) == int(0.9 * 124 // 4) + int(0.9 * 360 // 4)
    a, b = ds[3, 11], ds[3, 11]
    assert a["signal"].shape == (4, 512) and a["signal"].dtype == torch.float32
    assert torch.equal(a["signal"], b["signal"]) and a["channels"] == b["channels"]
    fif_item = ds[0, 5]  # recordings are sorted by path: the FIF comes first
    assert set(fif_item["channels"].split(",")) <= {"F4-A1", "Cz-A2"}  # two channels, drawn with replacement
    assert build_dataset(cfg, "val")[0]["signal"].shape == (4, 512)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        index_eeg(tmp_path / "missing")
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"0       not an edf header")
    with pytest.raises(DataError, match="broken.edf"):
        index_eeg(bad)
