"""data.units on real CT files: a min-max normalised NIfTI is detected as unit_interval (one printed line, the value
written back for config.yaml), DICOM rescale tags and HU value ranges give hu, ambiguous files and mixed folders
are refused in one line naming data.units, and truncated / corrupt files end in one line naming the file."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from modalities.base import DataError
from modalities.ct import build_dataset
from modalities.ct.units import UNIT_INTERVAL_HU, hu_to_units
from pretrain.cli import main
from tests.conftest import shared_data
from tests.modalities.ct.unit_interval import SLICE, unit_interval_nifti, write_nifti


def one_line(capsys) -> list[str]:
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if line.startswith("ct: ")]


def test_min_max_normalised_nifti_is_unit_interval(tmp_path, capsys):
    path, noisy, _ = unit_interval_nifti(tmp_path)
    assert noisy.min() == 0.0 and noisy.max() == 1.0
    cfg = {"path": str(path), "patch": None}
    ds = build_dataset(cfg, "train")
    lines = one_line(capsys)
    assert lines == [f"ct: {path}: values in [0.000, 1.000] -> data.units=unit_interval "
                     "(set data.units=hu to override)"]
    assert cfg["units"] == "unit_interval" and ds.units == "unit_interval"
    s = ds[0]
    np.testing.assert_array_equal(s["image"][0].numpy(), noisy)  # read as it is, not rescaled
    assert s["meta"]["units"] == "unit_interval"
    assert ds.hu_to_data(-1024.0) == 0.0 and ds.hu_to_data(3072.0) == 1.0
    # the resolved value is what the next split (and config.yaml) reads: no second detection, no second line
    build_dataset(cfg, "val")
    assert one_line(capsys) == []
    # patches of [0, 1] data are padded with its air (0), not -1024
    pad = build_dataset({"path": str(path), "patch": 160, "units": "unit_interval"}, "val")[0]["image"]
    assert float(pad.min()) == 0.0


def test_dicom_rescale_tags_and_hu_values_are_hu(tmp_path, capsys):
    root = shared_data("ct")
    cfg = {"path": str(root / "CT_small.dcm"), "patch": None}
    assert build_dataset(cfg, "train").units == "hu" and cfg["units"] == "hu"
    assert "DICOM RescaleSlope/RescaleIntercept -> data.units=hu" in one_line(capsys)[0]
    # a HU volume as NIfTI (no tags): air reaches below -500 HU
    hu = np.load(root / SLICE).astype(np.float32)
    path = write_nifti(tmp_path / "hu.nii.gz", hu)
    cfg = {"path": str(path), "patch": 64}
    ds = build_dataset(cfg, "train")
    assert cfg["units"] == "hu" and ds.units == "hu"
    assert one_line(capsys) == [f"ct: {path}: values in [-1024, 1186] -> data.units=hu "
                                "(set data.units=unit_interval to override)"]
    # the .npy render itself is readable too (one slice, HU)
    cfg = {"path": str(root / SLICE), "patch": None}
    np.testing.assert_array_equal(build_dataset(cfg, "train")[0]["image"][0].numpy(), hu)
    assert cfg["units"] == "hu"


def test_declared_units_are_not_second_guessed(tmp_path, capsys):
    path, noisy, _ = unit_interval_nifti(tmp_path)
    cfg = {"path": str(path), "patch": None, "units": "hu"}  # the old behaviour, on purpose
    assert build_dataset(cfg, "train").units == "hu" and cfg["units"] == "hu"
    assert one_line(capsys) == []
    with pytest.raises(DataError, match=r"^data\.units: must be one of auto, hu, unit_interval, got 'percent'$"):
        build_dataset({"path": str(path), "units": "percent"}, "train")


def test_unit_interval_refuses_the_hu_low_dose_simulation(tmp_path):
    path, _, _ = unit_interval_nifti(tmp_path)
    with pytest.raises(DataError, match="data.dose_i0: the low-dose simulation needs Hounsfield units") as e:
        build_dataset({"path": str(path), "dose_i0": [1e5], "units": "unit_interval"}, "train")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def ambiguous_files(tmp_path):
    hu = np.load(shared_data("ct") / SLICE).astype(np.float32)
    byte = np.round((hu - hu.min()) / (hu.max() - hu.min()) * 255)  # an 8-bit export: [0, 255]
    yield write_nifti(tmp_path / "uint8_export.nii.gz", byte), "[0, 255]"
    # raw stored values of a DICOM slice whose rescale tags were stripped: [0, ~4095], no air below -500
    ds = pydicom.dcmread(shared_data("ct") / "CT_small.dcm")
    stored = ds.pixel_array
    assert float(ds.RescaleIntercept) < 0 and stored.min() >= 0
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(tmp_path / "no_rescale.dcm")
    yield tmp_path / "no_rescale.dcm", f"[{stored.min():.0f}, {stored.max():.0f}]"
    # soft tissue only (a crop without air): HU, but nothing says so
    yield write_nifti(tmp_path / "soft_tissue_crop.nii.gz", np.clip(hu[200:300, 200:300], -150, 300)), "[-150, 300]"


def test_ambiguous_values_are_refused_in_one_line(tmp_path):
    for path, rng in ambiguous_files(tmp_path):
        with pytest.raises(DataError) as e:
            build_dataset({"path": str(path)}, "train")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        assert f"values in {rng}" in msg and "data.units=hu or data.units=unit_interval" in msg, msg
        # declared, it is read
        assert build_dataset({"path": str(path), "units": "hu", "patch": 64}, "train").units == "hu"


def test_a_folder_mixing_conventions_is_refused(tmp_path):
    path, _, _ = unit_interval_nifti(tmp_path)
    shutil.copyfile(shared_data("ct") / "CT_small.dcm", tmp_path / "CT_small.dcm")
    with pytest.raises(DataError) as e:
        build_dataset({"path": str(tmp_path), "patch": 64}, "train")
    msg = str(e.value)
    assert "\n" not in msg and "unit_interval" in msg and "CT_small.dcm" in msg and "data.units" in msg, msg


def test_truncated_nifti_and_corrupt_dicom_end_in_one_line(tmp_path, capsys, run_cache):
    path, _, _ = unit_interval_nifti(tmp_path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    raw_dcm = (shared_data("ct") / "CT_small.dcm").read_bytes()
    bad_dcm = tmp_path / "cut.dcm"
    bad_dcm.write_bytes(raw_dcm[: len(raw_dcm) // 2])  # the header is whole, the pixel data cut
    for bad, units, needle in [(cut, "auto", "truncated or corrupt NIfTI data"),
                               (cut, "hu", "truncated or corrupt NIfTI data"),
                               (bad_dcm, "auto", "cannot decode pixel data")]:
        code = main(["ct", "--data", str(bad), "--out", str(tmp_path / f"run_{units}"), "--max-steps", "1",
                     "--quiet", "--no-eval", "--set", f"data.units={units}", "--set", "data.patch=null",
                     "--set", "train.num_workers=0", "--set", "train.threads=1"])
        err = [line for line in capsys.readouterr().err.strip().splitlines()
               if line and not line.startswith("warning: ")]
        assert code == 2, (bad, units, err)
        assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and needle in err[0], (bad, units, err)
        assert "Traceback" not in err[0]


def test_hu_to_units_maps_the_12_bit_range_onto_the_unit_interval():
    assert hu_to_units(UNIT_INTERVAL_HU[0], "unit_interval") == 0.0
    assert hu_to_units(UNIT_INTERVAL_HU[1], "unit_interval") == 1.0
    assert hu_to_units(40.0, "hu") == 40.0
    # a 400 HU window is ~0.1 of the unit interval: relative scales are kept
    assert hu_to_units(240.0, "unit_interval") - hu_to_units(-160.0, "unit_interval") == pytest.approx(400 / 4096)


def test_npy_slices_are_read_alone_but_not_beside_dicom(tmp_path):
    root = shared_data("ct")
    # the shared folder holds DICOM files and their .npy renders: only the DICOM slices are indexed
    from modalities.ct.volumes import index_ct

    assert all(r.path.endswith(".dcm") for r in index_ct(root))
    stack = np.stack([np.load(root / SLICE)[:64, :64]] * 3).astype(np.float32)
    stack[1] += 1.0
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "b.npy", stack[0])
    refs = index_ct(tmp_path)
    assert [(r.path.endswith("b.npy"), r.index) for r in refs] == [(True, 0), (False, 0), (False, 1), (False, 2)]
    cfg = {"path": str(tmp_path), "patch": None, "val_fraction": 0.0}
    ds = build_dataset(cfg, "train")
    assert cfg["units"] == "hu" and len(ds) == 4
    np.testing.assert_array_equal(ds[2]["image"][0].numpy(), stack[1])
    (tmp_path / "cut.npy").write_bytes((tmp_path / "b.npy").read_bytes()[:1000])
    with pytest.raises(DataError, match=r"cut\.npy: not a readable \.npy array"):
        index_ct(tmp_path / "cut.npy")


def test_probe_follows_the_units(tmp_path):
    from modalities.ct.probes import probe_targets

    cfg = {"probe_doses": [1e5], "n_angles": 60, "cache_dir": str(tmp_path / "cache")}
    hu = probe_targets({**cfg, "units": "hu"})["lowdose_real_slices"]
    unit = probe_targets({**cfg, "units": "unit_interval"})["lowdose_real_slices"]
    assert unit.meta["window"] == (hu_to_units(-160.0, "unit_interval"), hu_to_units(240.0, "unit_interval"))
    assert unit.meta["data_range"] == pytest.approx(400 / 4096)
    for a, b in zip(hu.x_test + hu.y_test, unit.x_test + unit.y_test):
        np.testing.assert_allclose(b.numpy(), (a.numpy() + 1024.0) / 4096.0, rtol=0, atol=1e-6)
    # evaluating on other files (units back to auto): the units of those files
    path, _, _ = unit_interval_nifti(tmp_path)
    other = probe_targets({**cfg, "units": "auto"}, path)["lowdose_real_slices"]
    assert other.meta["window"] == unit.meta["window"]
    assert probe_targets({**cfg, "units": "auto"}, shared_data("ct") / "CT_small.dcm")[
        "lowdose_real_slices"].meta["window"] == (-160.0, 240.0)
