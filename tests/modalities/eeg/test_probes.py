"""EEG probes on real recordings (the test data folder), and the eeg command line with both objectives."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.base import DataError
from modalities.eeg.probes import (BANDS, MOTOR_CHANNELS, band_power_features, motor_imagery_probe, probe_targets,
                                   record_identity_probe, text_record)
from modalities.eeg.recordings import index_eeg
from pretrain.loop import read_metrics
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def probes():
    return probe_targets({"fs": 128}, None, signals_root=shared_data("signals"))


def test_motor_imagery_windows_come_from_the_annotated_events(probes):
    ps = probes["motor_imagery"]
    # default: all 38 events (19 rest, 19 movement) in 6 blocked folds of the 124 s run, none held out
    assert ps.x_train.shape == (38, len(MOTOR_CHANNELS), 160) and len(ps.y_test) == 0
    assert np.bincount(ps.y_train).tolist() == [19, 19]
    # events are in time order: blocks are consecutive and each holds 3-4 events of both classes
    assert np.all(np.diff(ps.folds) >= 0) and set(ps.folds.tolist()) == set(range(6))
    for b in range(6):
        counts = np.bincount(ps.y_train[ps.folds == b], minlength=2)
        assert 3 <= counts.min() and counts.max() <= 4
    assert np.isfinite(ps.x_train).all() and np.abs(ps.x_train.mean(-1)).max() < 1e-4
    assert ps.meta["embedding"] == "channels"  # the probes read the montage, not the channel mean


def test_motor_imagery_split_keeps_windows_on_one_side(signals_dir):
    path = signals_dir / "eeg" / "test_edf_overlapping_annotations.edf"
    fixed = motor_imagery_probe(path)  # fixed split: onsets before 2/3 of the run train
    assert fixed.folds is None and fixed.x_train.shape == (26, len(MOTOR_CHANNELS), 160) and len(fixed.y_test) == 12
    assert np.bincount(fixed.y_train).tolist() == [13, 13] and np.bincount(fixed.y_test).tolist() == [6, 6]
    ps = motor_imagery_probe(path, train_fraction=0.5)
    assert len(ps.y_train) + len(ps.y_test) == 38  # no event window crosses 62 s here
    folded = motor_imagery_probe(path, folds=6)  # the same 38 windows, in time order
    assert np.array_equal(folded.x_train, np.concatenate([fixed.x_train, fixed.x_test]))
    assert np.array_equal(folded.y_train, np.concatenate([fixed.y_train, fixed.y_test]))
    with pytest.raises(DataError, match="no channel 'A1'"):
        motor_imagery_probe(path, channels=("A1",))
    with pytest.raises(DataError, match="folds must be at least 2, got 1"):
        motor_imagery_probe(path, folds=1)
    with pytest.raises(DataError, match="embedding must be 'channels' or 'mean', got 'tokens'"):
        motor_imagery_probe(path, embedding="tokens")


def test_record_identity_uses_one_channel_per_recording(probes):
    ps = probes["record_identity"]
    assert ps.class_names == ("data_resting_EO_200Hz_raw.fif:Cz-A2", "test_edf_overlapping_annotations.edf:Cz",
                              "data_N2_spindles_15sec_200Hz.txt:value", "data_N3_no-spindles_30sec_100Hz.txt:value")
    # default: 3 blocked folds, each holding a third of every recording's windows (N2 lasts 15 s: 4 per block)
    assert ps.x_train.shape == (159, 1, 256) and len(ps.y_test) == 0
    for k in range(3):
        assert np.bincount(ps.y_train[ps.folds == k]).tolist() == [20, 20, 4, 9]
    fixed = record_identity_probe([index_eeg(shared_data("signals") / "eeg")[0]] * 2, folds=None)
    assert fixed.folds is None and fixed.x_train.shape == (80, 1, 256) and fixed.x_test.shape == (40, 1, 256)
    with pytest.raises(DataError, match="folds must be at least 2"):
        record_identity_probe([], folds=1)


def test_text_channel_needs_a_rate_in_its_name(tmp_path, signals_dir):
    rec = text_record(signals_dir / "sleep" / "data_N3_no-spindles_30sec_100Hz.txt")
    assert rec.fs == 100.0 and rec.duration_s == 30.0 and len(rec.channels) == 1 and rec.scales == (1.0,)
    bad = tmp_path / "eeg.txt"
    bad.write_text("1\n2\n")
    with pytest.raises(DataError, match="eeg.txt: no sampling rate"):
        text_record(bad)


def test_missing_root_is_an_error_and_an_empty_one_gives_no_probes(tmp_path):
    with pytest.raises(DataError, match=r"^data\.probe_data: .*none is not a folder$"):
        probe_targets({"fs": 128}, None, signals_root=tmp_path / "none")
    assert probe_targets({"fs": 128}, None, signals_root=tmp_path) == {}


@pytest.mark.parametrize("objective", ["vq_reconstruction", "jepa"])
def test_command_line_trains_both_objectives(objective, tmp_path, run_cache):
    from pretrain.cli import main

    out = tmp_path / objective
    assert main(["eeg", "--objective", objective, "--max-steps", "3", "--batch-size", "4", "--no-eval", "--quiet",
                 "--out", str(out)]) == 0
    rows = read_metrics(out)
    assert rows[-1]["step"] == 3 and np.isfinite(rows[-1]["loss"])
    if objective == "vq_reconstruction":
        assert {"perplexity", "codebook_usage"} <= set(rows[-1])
    assert (out / "encoder" / "model.safetensors").is_file()


def test_band_power_features_put_a_rhythm_in_its_band():
    fs, t = 128.0, np.arange(256) / 128.0
    rng = np.random.default_rng(0)
    x = np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 20 * t)])[None] + 0.01 * rng.normal(size=(1, 2, 256))
    f = band_power_features(x, fs).reshape(len(BANDS), 2)  # band-major: [band, channel]
    names = list(BANDS)
    assert names[int(f[:, 0].argmax())] == "alpha" and names[int(f[:, 1].argmax())] == "beta"
    # a 10 Hz sine of amplitude 1 against noise of 0.01: its band holds > 1000x the power of the others
    assert f[names.index("alpha"), 0] - np.delete(f[:, 0], names.index("alpha")).max() > np.log(1000)
    with pytest.raises(DataError, match="band narrow .* holds no frequency of a 0.5 s window"):
        band_power_features(x[..., :64], fs, {"narrow": (10.2, 10.4)})
