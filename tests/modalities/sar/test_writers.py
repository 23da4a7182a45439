"""SAR output writers: the despeckled SLC in the input's layout, dtype and tags, the input's phase, the model's
amplitude (in the input's scale), tile by tile."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from modalities.base import DataError
from modalities.sar.patches import sensor_statistics
from modalities.sar.readers import open_slc, read_slc
from modalities.sar.tiling import despeckle_scene
from modalities.sar.writers import denoise_sar_files
from models.unet2d import MerlinUNet
from tests.conftest import shared_data

pytestmark = pytest.mark.usefixtures("one_thread")

RUN_CFG = {"data": {}, "objective": {"name": "merlin"}, "model": {"name": "merlin_unet"}}


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """complex64[96, 128]: a real ENVISAT SLC crop."""
    return read_slc(shared_data("sar") / "envisat_slc_500x500_reim.npy")[200:296, 150:278]


@pytest.fixture(scope="module")
def net(scene) -> MerlinUNet:
    """A real (untrained) MERLIN U-Net with the scene's sensor statistics; 96-pixel tiles so that the 96 x 128
    scene is despeckled in 4 tiles."""
    torch.manual_seed(0)
    stats = sensor_statistics([open_slc(shared_data("sar") / "envisat_slc_500x500_reim.npy")], max_pixels=250_000)
    return MerlinUNet(width=8, tile=96, overlap=32, **stats).eval()


def amplitude_of(net: MerlinUNet, path: Path, tmp: Path, band: int | None = None) -> np.ndarray:
    return np.load(despeckle_scene(net, path, tmp / f"amp{band}.npy", stats_window=1024, band=band))[0]


def check_phase_and_amplitude(z_in: np.ndarray, z_out: np.ndarray, amplitude: np.ndarray, atol: float = 0.0):
    nonzero = np.abs(z_in) > 0
    assert nonzero.mean() > 0.9
    dphi = np.angle(z_out[nonzero] * np.conj(z_in[nonzero]))
    assert np.abs(dphi).max() < 1e-4 + atol  # the original phase
    # the model's amplitude, unscaled; no-data zeros stay zero
    np.testing.assert_allclose(np.abs(z_out[nonzero]), amplitude[nonzero], rtol=1e-5, atol=atol)
    assert not np.any(z_out[~nonzero])
    assert np.abs(np.abs(z_out) - np.abs(z_in)).mean() > 0.05 * np.abs(z_in).mean()  # and it changed


def test_npy_layouts_keep_shape_dtype_phase(tmp_path, scene, net):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    with_fill = scene.copy()
    with_fill[:, :7] = 0  # a no-data border, as Sentinel-1 bursts have
    np.save(data / "reim.npy", np.stack([with_fill.real, with_fill.imag], -1).astype(np.float32))
    np.save(data / "sub" / "complex.npy", scene.astype(np.complex128))
    cint = np.clip(np.rint(np.stack([scene.real, scene.imag], -1) * 100), -32768, 32767).astype(np.int16)
    np.save(data / "cint16.npy", cint)
    out = tmp_path / "out"
    written = denoise_sar_files(net, {"path": str(data)}, out, RUN_CFG, progress=False)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["cint16.npy", "reim.npy", "sub/complex.npy"]
    for name in ("reim.npy", "sub/complex.npy", "cint16.npy"):
        a, b = np.load(data / name), np.load(out / name)
        assert b.shape == a.shape and b.dtype == a.dtype, name
        z_in, z_out = read_slc(data / name), read_slc(out / name)
        amp = amplitude_of(net, data / name, tmp_path)
        # int16 parts: the output is rounded to integers (0.5 per part at most)
        check_phase_and_amplitude(z_in, z_out, amp, atol=0.0 if name != "cint16.npy" else 0.75)
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_complex_tiff_round_trip_keeps_tags(tmp_path, scene, net):
    data = tmp_path / "data"
    data.mkdir()
    geo = [(33550, "d", 3, (10.0, 12.5, 0.0), False), (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4.2e6, 0.0), False)]
    z = scene.astype(np.complex64)
    tifffile.imwrite(data / "plain.tif", z, extratags=geo)
    tifffile.imwrite(data / "zipped.tiff", z, compression="zlib", extratags=geo, rowsperstrip=16)
    out = tmp_path / "out"
    written = denoise_sar_files(net, {"path": str(data)}, out, RUN_CFG, progress=False)
    assert sorted(p.name for p in written) == ["plain.tif", "zipped.tiff"]
    for name, compression in (("plain.tif", 1), ("zipped.tiff", 8)):
        with tifffile.TiffFile(out / name) as tif:
            page = tif.pages.first
            assert page.shape == z.shape and page.dtype == np.complex64
            assert int(page.compression) == compression
            assert page.tags[33550].value == (10.0, 12.5, 0.0)
            assert page.tags[33922].value == (0.0, 0.0, 0.0, 500000.0, 4.2e6, 0.0)
            z_out = page.asarray()
        check_phase_and_amplitude(z, z_out, amplitude_of(net, data / name, tmp_path))


def test_i_q_sample_tiffs_keep_their_sample_layout(tmp_path, scene, net):
    data = tmp_path / "data"
    data.mkdir()
    reim = np.stack([scene.real, scene.imag], -1).astype(np.float32)
    tifffile.imwrite(data / "planar.tif", np.moveaxis(reim, -1, 0), photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(data / "iq16.tif", np.rint(reim * 100).astype(np.int16), photometric="minisblack",
                     planarconfig="contig", compression="zlib")
    out = tmp_path / "out"
    denoise_sar_files(net, {"path": str(data)}, out, RUN_CFG, progress=False)
    for name, planar, dtype, atol in (("planar.tif", 2, np.float32, 0.0), ("iq16.tif", 1, np.int16, 0.75)):
        with tifffile.TiffFile(data / name) as a, tifffile.TiffFile(out / name) as b:
            pa, pb = a.pages.first, b.pages.first
            assert pb.shape == pa.shape and pb.dtype == dtype and int(pb.planarconfig) == planar
            assert int(pb.compression) == int(pa.compression)
        check_phase_and_amplitude(read_slc(data / name), read_slc(out / name),
                                  amplitude_of(net, data / name, tmp_path), atol=atol)


def test_polarisation_stack_despeckles_the_chosen_channel_only(tmp_path, scene, net):
    stack = np.stack([scene, scene[::-1].copy()]).astype(np.complex64)
    src = tmp_path / "scene_HH_HV.npy"
    np.save(src, stack)
    out = tmp_path / "out"
    denoise_sar_files(net, {"path": str(src), "polarisation": "HV"}, out, RUN_CFG, progress=False)
    result = np.load(out / src.name)
    assert result.shape == stack.shape and result.dtype == stack.dtype
    np.testing.assert_array_equal(result[0], stack[0])  # HH: not selected, copied unchanged
    check_phase_and_amplitude(stack[1], result[1], amplitude_of(net, src, tmp_path, band=1))


def test_detected_image_is_refused_in_one_line(tmp_path, net):
    bad = tmp_path / "amplitude.npy"
    np.save(bad, np.ones((64, 64), np.float32))
    with pytest.raises(DataError, match="amplitude.npy.*single-look complex") as e:
        denoise_sar_files(net, {"path": str(bad)}, tmp_path / "out", RUN_CFG, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out" / "amplitude.npy").exists()


def test_a_despeckled_image_off_the_input_radiometry_is_warned(tmp_path):
    """A despeckler keeps the mean intensity (ratio image mean 1); an output 41x too bright (a 60-step model) is
    named in one warning line, and an output at the input's radiometry is not."""
    from modalities.sar.writers import _fill

    z = (np.random.default_rng(0).normal(size=(64, 48)) + 1j * np.random.default_rng(1).normal(size=(64, 48)))
    z[:, :4] = 0  # no-data border: not counted
    np.save(tmp_path / "scene.npy", z.astype(np.complex64))
    source = open_slc(tmp_path / "scene.npy")
    smooth = np.full((1, 64, 48), np.sqrt(np.mean(np.abs(z[:, 4:]) ** 2)), np.float32)  # same mean intensity
    view = np.zeros((64, 48), np.complex64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fill(source, view, "complex", smooth, "kept.npy")
    np.testing.assert_allclose(np.abs(view[:, 4:]), smooth[0, :, 4:], rtol=1e-5)
    assert np.all(view[:, :4] == 0)
    with pytest.warns(UserWarning, match=r"^out.npy: mean intensity is 41 x the input's .* under-trained"):
        _fill(source, view, "complex", smooth * np.sqrt(41.0), "out.npy")
