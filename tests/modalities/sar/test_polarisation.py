"""Multi-polarisation SLC stacks (``data.polarisation``) and ENL in small scenes, built from the real crops."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.base import DataError
from modalities.sar import MODALITY
from modalities.sar.patches import SLCPatches
from modalities.sar.probes import homogeneous_boxes, real_probe
from modalities.sar.readers import find_slc_images, open_slc, read_slc
from pretrain.evaluate import denoising_probe, enl, summarise_denoising
from pretrain.evaluate.report import _denoising_section
from tests.conftest import shared_data

NAMES = ["HH", "HV", "VH", "VV"]
SCALES = (1.0, 0.31, 0.29, 0.83)  # cross-polar channels are weaker


def _stack(raw: np.ndarray) -> np.ndarray:
    """[4, H, W, 2]: four differently shifted and scaled copies of one real [H, W, 2] SLC (distinct channels)."""
    return np.stack([np.roll(raw, (37 * k, 53 * k), axis=(0, 1)) * s for k, s in enumerate(SCALES)]).astype(np.float32)


@pytest.fixture(scope="module")
def envisat():
    return np.load(shared_data("sar") / "envisat_slc_500x500_reim.npy")


@pytest.fixture()
def stack_file(tmp_path, envisat):
    stack = _stack(envisat[:256, :256])
    path = tmp_path / "scene_HH_HV_VH_VV_reim.npy"
    np.save(path, stack)
    return path, stack


def _complex(a: np.ndarray) -> np.ndarray:
    return (a[..., 0] + 1j * a[..., 1]).astype(np.complex64)


def test_a_stack_without_the_option_is_refused_in_one_line_listing_the_channels(stack_file):
    path, _ = stack_file
    with pytest.raises(DataError) as e:
        read_slc(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "data.polarisation" in msg and "all" in msg
    assert "0 HH, 1 HV, 2 VH, 3 VV" in msg and "(4, 256, 256, 2)" in msg
    with pytest.raises(DataError, match="0 HH, 1 HV, 2 VH, 3 VV"):
        SLCPatches(path, patch=64)
    with pytest.raises(DataError, match="data.polarisation: channel 4 does not exist"):
        find_slc_images(path, 4)
    with pytest.raises(DataError, match="data.polarisation: 'RR' is not"):
        find_slc_images(path, "RR")
    with pytest.raises(DataError, match="RH is not a channel"):
        find_slc_images(path, "RH")


@pytest.mark.parametrize("choice, band", [(2, 2), ("2", 2), ("hv", 1), ("VV", 3)])
def test_polarisation_by_index_or_name_reads_that_channel(stack_file, choice, band):
    path, stack = stack_file
    (src,), decision = find_slc_images(path, choice)
    assert (src.band, src.name) == (band, NAMES[band])
    assert decision.startswith(f"sar: data.polarisation={choice} -> 1 image(s)") and "from the file name" in decision
    np.testing.assert_array_equal(src.open().read(), _complex(stack[band]))
    np.testing.assert_array_equal(open_slc(path, band).window(10, 20, 30, 45), _complex(stack[band, 10:20, 30:45]))


def test_all_trains_on_every_channel_as_a_separate_image(stack_file, capsys):
    path, stack = stack_file
    cfg = {"path": str(path), "patch": 64, "polarisation": "all", "stats_window": 128, "val_fraction": 0.3}
    train = MODALITY.build_dataset(cfg, "train")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "data.polarisation=all -> 4 image(s)" in out and "HH, HV, VH, VV" in out
    val = MODALITY.build_dataset(cfg, "val")
    assert capsys.readouterr().out == ""  # the decision is said once
    assert [s.source.band for s in train.scenes] == [0, 1, 2, 3] == [s.source.band for s in val.scenes]
    # one scene: each channel split by rows (the channels are the same ground, so none is held out whole)
    assert {s.rows for s in train.scenes} == {(0, 179)} and {s.rows for s in val.scenes} == {(179, 256)}
    powers = []
    for k in range(len(train)):
        item = train[(k, k)]
        assert item["image"].shape == (2, 64, 64)
        powers.append((train.scene_of(k).source.band, float((item["image"] ** 2).mean())))
    assert {b for b, _ in powers} == {0, 1, 2, 3}
    mean = {b: np.mean([p for c, p in powers if c == b]) for b in range(4)}
    assert mean[1] < 0.3 * mean[0] and mean[3] > 0.3 * mean[0]  # the channels' own power, not one channel 4 times
    stats = train.sensor_statistics()
    assert stats["log_min"] < stats["log_max"]


def test_complex_and_channel_last_stacks_and_unnamed_channels(tmp_path, envisat):
    z = _complex(_stack(envisat[:128, :96]))  # complex [4, 128, 96]
    np.save(tmp_path / "a.npy", z)
    np.save(tmp_path / "b.npy", np.moveaxis(z, 0, -1))  # channel-last [128, 96, 4]
    for name in ("a.npy", "b.npy"):
        with pytest.raises(DataError, match=r"channels 0, 1, 2, 3 \(names unknown"):
            read_slc(tmp_path / name)
        (src,), _ = find_slc_images(tmp_path / name, 1)
        np.testing.assert_array_equal(src.open().read(), z[1])
        with pytest.raises(DataError, match="data.polarisation_names"):
            find_slc_images(tmp_path / name, "HV")
        (src,), _ = find_slc_images(tmp_path / name, "HV", ["hh", "hv", "vh", "vv"])
        assert src.band == 1 and src.name == "HV"


def test_single_polarisation_files_named_for_another_polarisation_are_skipped(tmp_path, envisat):
    np.save(tmp_path / "s1a-iw1-slc-vh-001.npy", envisat[:96, :96])
    np.save(tmp_path / "s1a-iw1-slc-vv-001.npy", envisat[100:196, :96])
    srcs, decision = find_slc_images(tmp_path, "VV")
    assert [s.path.name for s in srcs] == ["s1a-iw1-slc-vv-001.npy"] and "skipped" in decision
    assert len(find_slc_images(tmp_path, None)[0]) == 2 and find_slc_images(tmp_path, None)[1] == ""


def test_command_line_refuses_a_stack_in_one_line(stack_file, run_cache, capsys):
    from pretrain.cli import main

    path, _ = stack_file
    assert main(["sar", "--data", str(path), "--max-steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "data.polarisation" in err and "1 HV" in err


def test_enl_of_a_100_by_50_crop_uses_smaller_boxes_and_says_so(tmp_path, envisat, capsys):
    crop = envisat[200:300, 220:270]  # 100 x 50: no 48 x 48 box inside the 8-pixel border
    intensity = np.abs(_complex(crop).astype(np.complex128)) ** 2
    assert homogeneous_boxes(intensity, shrink=False) == []
    boxes = homogeneous_boxes(intensity)
    assert boxes and {(b[1] - b[0], b[3] - b[2]) for b in boxes} == {(32, 32)}
    assert all(0.5 < enl(intensity, b) < 2.0 for b in boxes)  # single-look speckle: ENL ~ 1
    np.save(tmp_path / "small.npy", crop)
    ps = real_probe(tmp_path / "small.npy")
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "no 48 x 48 ENL box fits 1 of 1 image(s)" in said
    assert "small.npy 100 x 50: 32 x 32" in said
    rows = denoising_probe({}, "real SLC", ps)
    by_method = {r["method"]: r for r in rows}
    for m in ("noisy input", "boxcar 7x7", "refined Lee"):
        assert np.isfinite(by_method[m]["enl"]) and by_method[m]["enl_box"] == "32x32", m
    assert by_method["boxcar 7x7"]["enl"] > 3 * by_method["noisy input"]["enl"]
    table = "\n".join(_denoising_section(rows))
    assert "(32x32 boxes)" in table and summarise_denoising(rows)[0]["enl_box"] == "32x32"


@pytest.mark.slow
def test_command_line_trains_on_all_channels_of_a_small_stack_and_reports_enl(tmp_path, envisat, run_cache, capsys):
    from pretrain.cli import main
    from pretrain.config import load_run_config

    np.save(tmp_path / "scene_HH_HV_VH_VV.npy", _stack(envisat[200:300, 220:270]))  # [4, 100, 50, 2]
    out = tmp_path / "run"
    assert main(["sar", "--data", str(tmp_path / "scene_HH_HV_VH_VV.npy"), "--max-steps", "2", "--batch-size", "2",
                 "--quiet", "--out", str(out), "--set", "model.width=8", "--set", "data.polarisation=all",
                 "--set", "train.rankme_every=2", "--set", "train.rankme_samples=2", "--set", "train.threads=1",
                 "--set", "train.num_workers=0"]) == 0
    said = capsys.readouterr().out
    assert "data.polarisation=all -> 4 image(s)" in said and "no 48 x 48 ENL box fits 4 of 4 image(s)" in said
    assert load_run_config(out / "config.yaml").data["polarisation"] == "all"
    report = (out / "report.md").read_text()
    enl_rows = [line for line in report.splitlines() if line.startswith("| real SLC |")]
    assert enl_rows and all("(32x32 boxes)" in line for line in enl_rows)
