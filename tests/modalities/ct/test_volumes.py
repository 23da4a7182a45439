"""CT readers on the real DICOM files of ../shared/data/ct: HU equal to pydicom's (compressed ones included),
series sorting, NIfTI slices, and the bad-input messages."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from modalities.base import DataError
from modalities.ct.volumes import apply_window, index_ct, read_dicom_hu, read_slice
from tests.conftest import shared_data

RENDERS = {"693_UNCR.dcm": "cq500_head_ct_693_UNCR_HU_512.npy",
           "bad_sequence.dcm": "siemens_neck_ct_bad_sequence_HU_512.npy",
           "explicit_VR-UN.dcm": "tcia_pancreas_ct_explicit_VR-UN_HU_512.npy"}


def pydicom_hu(path) -> np.ndarray:
    ds = pydicom.dcmread(str(path))
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_hu_equals_pydicom_for_every_shared_ct_including_compressed():
    root = shared_data("ct")
    files = sorted(root.glob("*.dcm"))
    syntaxes = {pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID.name for f in files}
    assert any("JPEG 2000" in s for s in syntaxes) and any("JPEG Lossless" in s for s in syntaxes)
    assert len(files) == 4
    for f in files:
        hu = read_dicom_hu(f)
        np.testing.assert_array_equal(hu, pydicom_hu(f), err_msg=f.name)
        if f.name in RENDERS:
            np.testing.assert_array_equal(hu, np.load(root / RENDERS[f.name]).astype(np.float32))


def test_folder_index_keeps_spacing_and_reads_each_slice():
    root = shared_data("ct")
    refs = index_ct(root)
    by_name = {r.id: r for r in refs}
    assert set(by_name) == {"693_UNCR.dcm:0", "bad_sequence.dcm:0", "explicit_VR-UN.dcm:0", "CT_small.dcm:0"}
    assert by_name["693_UNCR.dcm:0"].spacing == pytest.approx((0.478516, 0.478516))
    assert by_name["CT_small.dcm:0"].rows == 128
    assert read_slice(by_name["CT_small.dcm:0"]).shape == (128, 128)


def test_series_sorted_by_position_along_the_normal(tmp_path):
    src = get_testdata_file("CT_small.dcm")
    zs = [30.0, -10.0, 10.0, 50.0]
    for k, z in enumerate(zs):  # files named in an order that is not the spatial one
        ds = pydicom.dcmread(src)
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        ds.PixelData = (ds.pixel_array + k).astype(ds.pixel_array.dtype).tobytes()  # tell slices apart
        ds.save_as(tmp_path / f"slice_{k}.dcm")
    refs = index_ct(tmp_path)
    assert [r.position for r in refs] == sorted(zs)
    assert all(r.slice_spacing == pytest.approx(20.0) for r in refs)
    base = pydicom_hu(src)
    for r in refs:
        k = zs.index(r.position)
        np.testing.assert_array_equal(read_slice(r), base + k)


def test_nifti_volume_slices_and_spacing(tmp_path):
    import nibabel as nib

    vol = np.random.default_rng(0).integers(-1000, 1000, size=(20, 16, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([0.7, 0.8, 2.5, 1.0])), tmp_path / "ct.nii.gz")
    refs = index_ct(tmp_path / "ct.nii.gz")
    assert len(refs) == 3 and refs[1].spacing == pytest.approx((0.8, 0.7)) and refs[1].slice_spacing == 2.5
    np.testing.assert_array_equal(read_slice(refs[1]), vol[:, :, 1].T)


def test_bad_inputs_are_named(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels.dcm")
    with pytest.raises(DataError, match=r"no_pixels.dcm: DICOM file has no pixel data"):
        index_ct(tmp_path / "no_pixels.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(DataError, match=r"mr.dcm: DICOM Modality is 'MR', not 'CT'"):
        read_dicom_hu(tmp_path / "mr.dcm")
    tiny = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    tiny.Rows = tiny.Columns = 1
    tiny.PixelData = np.zeros((1, 1), np.int16).tobytes() + b"\0\0"  # even length
    tiny.save_as(tmp_path / "one_pixel.dcm")
    with pytest.raises(DataError, match=r"one_pixel.dcm: image is 1x1; CT slices need at least 8x8"):
        index_ct(tmp_path / "one_pixel.dcm")
    # a folder of only such files says why nothing was found
    with pytest.raises(DataError, match=r"no CT slices found .*skipped: .*\(\+2 more\)"):
        index_ct(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: not a DICOM"):
        index_ct(tmp_path / "notes.txt")


def test_windows():
    hu = np.array([-2000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_allclose(apply_window(hu, "soft_tissue"), [0, 0, 0.5, 1, 1])
    with pytest.raises(DataError, match="unknown HU window 'liver'"):
        apply_window(hu, "liver")
