"""SAR probes: homogeneous boxes on the real crops hold single-look speckle; the command line trains and reports."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.sar.probes import homogeneous_boxes, probe_targets, real_probe, simulated_probe
from modalities.sar.readers import read_slc
from pretrain.loop import read_metrics
from tests.conftest import shared_data


@pytest.mark.parametrize("name", ["envisat_slc_500x500_reim.npy", "uavsar_winnipeg_slc_HH_250x250_reim.npy"])
def test_homogeneous_boxes_of_real_crops_hold_single_look_speckle(name):
    i = np.abs(read_slc(shared_data("sar") / name).astype(np.complex128)) ** 2
    boxes = homogeneous_boxes(i)
    assert len(boxes) == 3
    for r0, r1, c0, c1 in boxes:
        v = i[r0:r1, c0:c1]
        assert (v > 0).all()
        assert 0.7 < v.mean() ** 2 / v.var() < 1.4  # ENL of one look on a homogeneous area


def test_real_probe_crops_centred_scenes_without_references():
    ps = real_probe(shared_data("sar"), probe_size=256)
    assert ps.task == "denoising" and ps.y_test == [None, None] and ps.meta["speckle"]
    assert [x.shape for x in ps.x_test] == [(256, 256), (250, 250)]
    assert set(ps.meta["baselines"]) == {"boxcar 7x7", "Lee 7x7", "refined Lee"}
    assert probe_targets({}, shared_data("sar")).keys() == {"real SLC"}


def test_simulated_probe_has_clean_amplitudes():
    ps = simulated_probe(names=("coins",))
    (x,), (y,) = ps.x_test, ps.y_test
    assert x.dtype == np.complex64 and y.shape == (1, *x.shape)
    assert np.mean(np.abs(x) ** 2) / np.mean(y ** 2) == pytest.approx(1.0, abs=0.03)
    assert ps.meta["data_range"] == 100.0 and ps.meta["to_display"](x).shape == x.shape


@pytest.mark.slow
def test_command_line_trains_merlin_on_a_real_crop_and_reports(tmp_path, run_cache):
    from pretrain.cli import main

    out = tmp_path / "run"
    data = shared_data("sar") / "uavsar_winnipeg_slc_HH_250x250_reim.npy"
    assert main(["sar", "--data", str(data), "--max-steps", "3", "--batch-size", "2", "--quiet", "--out", str(out),
                 "--set", "model.width=8", "--set", "data.patch=64", "--set", "data.probe_size=128",
                 "--set", "train.rankme_every=3", "--set", "train.rankme_samples=2", "--set", "train.threads=1"]) == 0
    rows = read_metrics(out)
    assert rows[-1]["step"] == 3 and np.isfinite(rows[-1]["loss"]) and "val_nll" in rows[-1]
    import models

    enc = models.load_pretrained(out / "encoder")
    assert enc.log_min < enc.log_max  # the sensor statistics were estimated and saved
    report = (out / "report.md").read_text()
    assert "real SLC" in report and "refined Lee" in report


def test_detected_input_ends_in_one_line(tmp_path, run_cache, capsys):
    from pretrain.cli import main

    np.save(tmp_path / "amp.npy", np.ones((64, 64), np.float32))
    assert main(["sar", "--data", str(tmp_path / "amp.npy"), "--max-steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "real-valued" in err and "\n" not in err
