"""SLC readers on the shared real crops and on files in every accepted layout; bad input ends in one line."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from modalities.base import DataError
from modalities.sar.readers import find_slc_files, open_slc, read_slc
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def sar_dir():
    return shared_data("sar")


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_reim_npy_is_read_with_the_values_in_the_file(sar_dir):
    path = sar_dir / "envisat_slc_500x500_reim.npy"
    raw = np.load(path)
    z = read_slc(path)
    assert z.dtype == np.complex64 and z.shape == (500, 500)
    np.testing.assert_array_equal(z.real, raw[..., 0])
    np.testing.assert_array_equal(z.imag, raw[..., 1])
    scene = open_slc(path)
    np.testing.assert_array_equal(scene.window(100, 150, 200, 260), z[100:150, 200:260])
    np.testing.assert_array_equal(scene[10:20, 30:45], z[10:20, 30:45])
    assert [p.name for p in find_slc_files(sar_dir)] == sorted(p.name for p in sar_dir.glob("*.npy"))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_npy(tmp_path, sar_dir, dtype):
    raw = np.load(sar_dir / "uavsar_winnipeg_slc_HH_250x250_reim.npy")
    z = (raw[..., 0] + 1j * raw[..., 1]).astype(dtype)
    np.save(tmp_path / "scene.npy", z)
    np.testing.assert_array_equal(read_slc(tmp_path / "scene.npy"), z.astype(np.complex64))


def test_complex_geotiff(tmp_path):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(40, 56)) + 1j * rng.normal(size=(40, 56))).astype(np.complex64)
    tifffile.imwrite(tmp_path / "slc.tif", z)
    np.testing.assert_array_equal(read_slc(tmp_path / "slc.tif"), z)


def _sentinel1_tiff(path, i: np.ndarray, q: np.ndarray, rowsperstrip: int | None = None) -> None:
    """A Sentinel-1 SAFE-style measurement TIFF: one 32-bit complex-integer sample (int16 I, int16 Q) per pixel,
    SampleFormat 5, uncompressed."""
    pairs = np.stack([i, q], axis=-1).astype("<i2")
    packed = pairs.view("<i4")[..., 0]  # same bytes, one 32-bit word per pixel
    tifffile.imwrite(path, packed, rowsperstrip=rowsperstrip)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["SampleFormat"].overwrite(5)


@pytest.mark.parametrize("rowsperstrip", [None, 7])
def test_sentinel1_complex_int16(tmp_path, rowsperstrip):
    rng = np.random.default_rng(1)
    i = rng.integers(-3000, 3000, size=(30, 50)).astype(np.int16)
    q = rng.integers(-3000, 3000, size=(30, 50)).astype(np.int16)
    path = tmp_path / "s1a-iw1-slc-vv-001.tiff"
    _sentinel1_tiff(path, i, q, rowsperstrip)
    with tifffile.TiffFile(path) as tif:
        assert int(tif.pages.first.sampleformat) == 5 and int(tif.pages.first.bitspersample) == 32
    z = read_slc(path)
    np.testing.assert_array_equal(z.real, i.astype(np.float32))
    np.testing.assert_array_equal(z.imag, q.astype(np.float32))


def test_detected_image_is_refused(tmp_path):
    np.save(tmp_path / "amplitude.npy", np.ones((20, 20), np.float32))
    with pytest.raises(DataError) as e:
        read_slc(tmp_path / "amplitude.npy")
    assert "real-valued" in _one_line(e) and "amplitude.npy" in str(e.value)
    tifffile.imwrite(tmp_path / "intensity.tif", np.ones((20, 20), np.float32))
    with pytest.raises(DataError) as e:
        read_slc(tmp_path / "intensity.tif")
    assert "detected" in _one_line(e)


def test_wrong_axis_order_is_named(tmp_path, sar_dir):
    raw = np.load(sar_dir / "uavsar_winnipeg_slc_HH_250x250_reim.npy")
    np.save(tmp_path / "planar.npy", np.moveaxis(raw, -1, 0))
    with pytest.raises(DataError) as e:
        read_slc(tmp_path / "planar.npy")
    msg = _one_line(e)
    assert "[2, H, W]" in msg and "[H, W, 2]" in msg


def test_nans_are_refused_with_their_position(tmp_path, sar_dir):
    raw = np.load(sar_dir / "uavsar_winnipeg_slc_HH_250x250_reim.npy").copy()
    raw[17, 42, 1] = np.nan
    np.save(tmp_path / "holes.npy", raw)
    with pytest.raises(DataError) as e:
        read_slc(tmp_path / "holes.npy")
    msg = _one_line(e)
    assert "1 NaN/Inf" in msg and "row 17" in msg and "column 42" in msg


def test_unknown_and_missing_files(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="unknown SLC format"):
        read_slc(tmp_path / "x.png")
    with pytest.raises(DataError, match="no such file"):
        read_slc(tmp_path / "missing.npy")
    with pytest.raises(DataError, match="no SLC files"):
        find_slc_files(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else tmp_path)
