"""CT output writers: NIfTI / DICOM / npy in -> the same format and geometry out, values in the input's units."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

import models
from modalities.base import DataError
from modalities.ct.writers import denoise_ct_files
from tests.conftest import shared_data

pytestmark = pytest.mark.usefixtures("one_thread")

AFFINE = np.array([[-0.68, 0.04, 0.0, 120.5], [0.03, 0.7, 0.1, -88.0], [0.0, -0.05, 2.5, -31.25], [0, 0, 0, 1]])


def run_cfg(units: str = "hu", objective: str = "filter2noise") -> dict:
    return {"data": {"units": units}, "objective": {"name": objective}, "model": {"name": "bilateral"}}


def filter_for(units: str = "hu") -> torch.nn.Module:
    """A real (untrained) Filter2Noise filter: its initial sigmas already smooth; one stage keeps tests fast."""
    torch.manual_seed(0)
    f = models.create("bilateral", stages=1)
    if units == "unit_interval":
        f.set_hu_range([0.0, 1.0])
    return f.eval()


def hu_slice(size: int = 96) -> np.ndarray:
    hu = np.load(shared_data("ct") / "cq500_head_ct_693_UNCR_HU_512.npy").astype(np.float32)
    return hu[200:200 + size, 128 - size // 2:128 + size // 2]  # air, skull and brain: HU by the value range


def nifti(path: Path, data_xyz: np.ndarray, dtype, slope: float | None = None, inter: float = 0.0) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    if slope is not None:
        stored = np.round((data_xyz - inter) / slope).astype(dtype)
    else:
        stored = data_xyz.astype(dtype)
    img = nib.Nifti1Image(stored, None, header)
    img.set_sform(AFFINE, code=2)
    img.set_qform(AFFINE, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def volume(size: int = 64) -> np.ndarray:
    a = hu_slice(size)
    return np.stack([a.T, a.T[::-1], a.T[:, ::-1]], -1)  # [X, Y, Z]: slice k is data[:, :, k].T


def check_nifti(src: Path, dst: Path) -> tuple[np.ndarray, np.ndarray]:
    a, b = nib.load(str(src)), nib.load(str(dst))
    assert b.shape == a.shape
    assert b.get_data_dtype() == a.get_data_dtype()
    np.testing.assert_allclose(b.affine, a.affine)
    np.testing.assert_allclose(b.get_qform(), a.get_qform(), atol=1e-5)
    assert int(b.header["sform_code"]) == int(a.header["sform_code"]) == 2
    assert int(b.header["qform_code"]) == int(a.header["qform_code"]) == 1
    assert b.header.get_xyzt_units() == a.header.get_xyzt_units()
    np.testing.assert_allclose(b.header.get_zooms(), a.header.get_zooms())
    x, y = a.get_fdata(), b.get_fdata()
    assert not np.array_equal(x, y)
    return x, y


def test_nifti_int16_keeps_scaling_geometry_and_hu(tmp_path):
    src = nifti(tmp_path / "scan.nii.gz", volume(), np.int16, slope=0.5, inter=-1024.0)
    written = denoise_ct_files(filter_for(), {"path": str(src), "units": "auto"}, tmp_path / "out", run_cfg(),
                               progress=False)
    assert written == [tmp_path / "out" / "scan.nii.gz"]
    x, y = check_nifti(src, written[0])
    out = nib.load(str(written[0]))
    assert (out.dataobj.slope, out.dataobj.inter) == (0.5, -1024.0)  # stored values in the input's scaling
    assert np.abs(x - y).mean() < 60 and np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95
    assert y.min() >= x.min() - 1 and y.max() <= x.max() + 1  # a bilateral filter averages: no new extremes
    # slice k of the output is the filter applied to slice k of the input (axis order kept)
    k1 = np.asarray(filter_for().denoise(torch.from_numpy(x[:, :, 1].T.astype(np.float32))[None]))[0]
    np.testing.assert_allclose(y[:, :, 1].T, k1, atol=0.51)  # int16 storage at slope 0.5: rounding only


def test_nifti_float32_and_unit_interval(tmp_path):
    vol = volume()
    f32 = nifti(tmp_path / "f32.nii", vol, np.float32)
    lo, hi = float(vol.min()), float(vol.max())
    unit = nifti(tmp_path / "unit.nii.gz", (vol - lo) / (hi - lo), np.float32)
    out = tmp_path / "out"
    written = denoise_ct_files(filter_for(), {"path": str(f32), "units": "auto"}, out, run_cfg(), progress=False)
    x, y = check_nifti(f32, written[0])
    assert np.abs(x - y).mean() < 60
    # a [0, 1] volume through a filter trained on HU data: mapped to HU and back, written in [0, 1]
    written = denoise_ct_files(filter_for(), {"path": str(unit), "units": "auto"}, out, run_cfg(), progress=False)
    x, y = check_nifti(unit, written[0])
    assert -0.01 <= y.min() and y.max() <= 1.01
    assert np.abs(x - y).mean() < 60 / (hi - lo)  # the HU bound, in this volume's [0, 1] units
    # and through a filter trained on unit-interval data: no mapping, same units out
    written = denoise_ct_files(filter_for("unit_interval"), {"path": str(unit), "units": "unit_interval"},
                               tmp_path / "out2", run_cfg("unit_interval"), progress=False)
    x2, y2 = check_nifti(unit, written[0])
    assert np.abs(x2 - y2).mean() < 0.05 and -0.01 <= y2.min() and y2.max() <= 1.01


def test_nan_outside_the_field_of_view_stays_nan(tmp_path):
    vol = volume(48)
    vol[:5] = np.nan  # a float volume whose outside-FOV columns are NaN
    src = nifti(tmp_path / "nan.nii.gz", vol, np.float32)
    written = denoise_ct_files(filter_for(), {"path": str(src), "units": "hu"}, tmp_path / "out", run_cfg(),
                               progress=False)
    y = nib.load(str(written[0])).get_fdata()
    assert np.array_equal(np.isnan(y), np.isnan(vol))
    assert np.abs(y[5:] - vol[5:]).mean() < 60 and not np.array_equal(y[5:], vol[5:])


def test_npy_slices_same_shape_and_dtype(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    stack = np.stack([hu_slice(48), hu_slice(48)[::-1]]).round().astype(np.int16)
    np.save(data / "sub" / "stack.npy", stack)
    np.save(data / "one.npy", hu_slice(40))
    written = denoise_ct_files(filter_for(), {"path": str(data), "units": "hu"}, tmp_path / "out", run_cfg(),
                               progress=False)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["one.npy", "sub/stack.npy"]
    a, b = np.load(data / "sub" / "stack.npy"), np.load(tmp_path / "out" / "sub" / "stack.npy")
    assert b.shape == a.shape and b.dtype == np.int16 and not np.array_equal(a, b)
    c = np.load(tmp_path / "out" / "one.npy")
    assert c.shape == (40, 40) and c.dtype == np.float32 and np.abs(c - hu_slice(40)).mean() < 60


def dicom_series(folder: Path, n: int = 3) -> list[Path]:
    """A real 3-slice series: CT_small.dcm (pydicom's test CT) at three positions 2.5 mm apart, its own UIDs."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    series = generate_uid()
    out = []
    for k in range(n):
        ds = pydicom.dcmread(str(shared_data("ct") / "CT_small.dcm"))
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [-75.7 + 2.5 * k]
        path = folder / f"slice{k}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        out.append(path)
    return out


def test_dicom_series_in_new_series_out(tmp_path):
    src = tmp_path / "series"
    inputs = dicom_series(src)
    for name in ("bad_sequence.dcm", "explicit_VR-UN.dcm"):  # JPEG lossless / JPEG 2000 compressed, 12/16 bit
        shutil.copy(shared_data("ct") / name, src / name)
        inputs.append(src / name)
    out = tmp_path / "out"
    written = denoise_ct_files(filter_for(), {"path": str(src), "units": "auto"}, out, run_cfg(), progress=False)
    assert sorted(p.name for p in written) == sorted(p.name for p in inputs)
    new_series = set()
    for path in inputs:
        a = pydicom.dcmread(str(path))
        b = pydicom.dcmread(str(out / path.name))
        assert b.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert b.SOPInstanceUID != a.SOPInstanceUID and b.SeriesInstanceUID != a.SeriesInstanceUID
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
        assert "denoised (Filter2Noise, modalities)" in b.SeriesDescription
        assert list(b.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "Filter2Noise" in b.DerivationDescription
        for tag in ("PatientID", "StudyInstanceUID", "ImagePositionPatient", "ImageOrientationPatient",
                    "PixelSpacing", "RescaleSlope", "RescaleIntercept", "BitsStored", "PixelRepresentation",
                    "Rows", "Columns", "InstanceNumber"):
            assert b.get(tag) == a.get(tag), tag
        x, y = a.pixel_array, b.pixel_array
        assert y.dtype == x.dtype and y.shape == x.shape
        hu_a = x * float(a.RescaleSlope) + float(a.RescaleIntercept)
        hu_b = y * float(b.RescaleSlope) + float(b.RescaleIntercept)
        assert not np.array_equal(hu_a, hu_b) and np.abs(hu_a - hu_b).mean() < 60
        assert hu_b.min() >= hu_a.min() and hu_b.max() <= hu_a.max()
        if a.get("PixelPaddingValue") is not None:  # outside the field of view stays padding
            pad = x == a.PixelPaddingValue
            assert np.array_equal(y[pad], x[pad])
        new_series.add((a.SeriesInstanceUID, b.SeriesInstanceUID))
    # one new series per input series: the three synthetic slices share theirs
    assert len({b for _, b in new_series}) == len({a for a, _ in new_series}) == 3


def test_dicom_output_reads_in_monai_as_a_series(tmp_path):
    from monai.transforms import LoadImage

    src = tmp_path / "series"
    dicom_series(src)
    out = tmp_path / "out"
    denoise_ct_files(filter_for(), {"path": str(src), "units": "auto"}, out, run_cfg("hu", "zs_n2n"),
                     progress=False)
    vol_in = np.asarray(LoadImage(reader="PydicomReader", image_only=True)(str(src)))
    img = LoadImage(reader="PydicomReader", image_only=True)(str(out))
    vol_out = np.asarray(img)
    assert vol_out.shape == vol_in.shape == (128, 128, 3)
    assert -1100 < vol_out.min() and vol_out.max() < 3100  # HU through the kept rescale tags
    assert np.abs(vol_out - vol_in).mean() < 60 and not np.array_equal(vol_out, vol_in)
    assert "ZS-N2N" in pydicom.dcmread(str(out / "slice0.dcm")).SeriesDescription


def test_output_over_input_is_refused(tmp_path):
    src = nifti(tmp_path / "scan.nii.gz", volume(32), np.float32)
    with pytest.raises(DataError, match="would overwrite its input"):
        denoise_ct_files(filter_for(), {"path": str(src)}, tmp_path, run_cfg(), progress=False)
