"""The whole MERLIN inference pipeline against deepdespeckling's own ``MerlinDenoiser.denoise_image`` on a crop of
the real ENVISAT SLC, with the published stripmap weights: per-window spectrum centring, normalisation, strided
windows averaged in the log domain, and the real/imaginary combination.

deepdespeckling imports ``osgeo.gdal`` at module level for its GeoTIFF reader, which these tests never call; when
GDAL is not installed an empty ``osgeo`` module is registered in ``sys.modules`` so that the package imports.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from models.unet2d import load_published_merlin, strided_origins
from modalities.sar.doppler import centre_spectrum, centre_spectrum_bins
from tests.conftest import shared_data

WINDOW, STRIDE = 64, 62  # the reference's (256, 254) at a size that runs in seconds


def reference():
    try:
        import osgeo  # noqa: F401
    except ImportError:
        sys.modules["osgeo"] = types.ModuleType("osgeo")
        sys.modules["osgeo"].gdal = None
    from deepdespeckling.merlin.merlin_denoiser import MerlinDenoiser
    from deepdespeckling.utils.utils import symetrise_real_and_imaginary_parts

    return MerlinDenoiser, symetrise_real_and_imaginary_parts


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """float32[150, 124, 2] (real, imaginary) of the ENVISAT SLC: 3 x 2 windows of 64 with strides of 62."""
    return np.load(shared_data("sar") / "envisat_slc_500x500_reim.npy")[200:350, 300:424]


def relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b) / np.abs(b)


@pytest.mark.parametrize("shape, ramp", [((64, 64), 0.0), ((64, 48), 0.31), ((45, 50), -0.22), ((33, 64), 0.47)])
def test_window_centring_rolls_the_same_bins_as_the_reference(crop, shape, ramp):
    _, symmetrise = reference()
    h, w = shape
    z = (crop[:h, :w, 0] + 1j * crop[:h, :w, 1]).astype(np.complex64)
    z = (z * np.exp(2j * np.pi * ramp * (np.arange(h)[:, None] + 0.5 * np.arange(w)[None, :]))).astype(np.complex64)
    re, im = symmetrise(z.real[None, :, :, None], z.imag[None, :, :, None])
    ours = centre_spectrum_bins(z)
    np.testing.assert_array_equal(ours.real, re)
    np.testing.assert_array_equal(ours.imag, im)


def test_strided_origins_are_the_reference_windows():
    from deepdespeckling.denoiser import Denoiser

    for n, size, stride in ((500, 256, 254), (150, 64, 62), (124, 64, 62), (64, 64, 62), (512, 256, 256), (300, 32, 7)):
        assert strided_origins(n, size, stride) == [int(v) for v in Denoiser.initialize_axis_range(None, n, size, stride)]


@pytest.mark.parametrize("symmetrise", [True, False])
def test_pipeline_equals_deepdespeckling_denoise_image(crop, symmetrise):
    merlin_denoiser, _ = reference()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        theirs = merlin_denoiser("stripmap", symetrise=symmetrise).denoise_image(crop, WINDOW, STRIDE)
        net = load_published_merlin("stripmap", tile=WINDOW, overlap=0)
        ours = net.denoise(np.moveaxis(crop, -1, 0), stride=STRIDE,
                           window_fn=centre_spectrum_bins if symmetrise else None)[0]
    finally:
        torch.set_num_threads(before)
    full = theirs["denoised"]["full"]
    assert ours.shape == full.shape == crop.shape[:2]
    err = relative(ours, full)
    assert np.median(err) < 1e-5 and err.max() < 1e-4, (np.median(err), err.max())
    if symmetrise:
        # the scene-wide continuous centring (our default) is a different, equally valid input to the network
        z = crop[..., 0] + 1j * crop[..., 1]
        other = net.denoise(centre_spectrum(z), stride=STRIDE)[0]
        assert np.median(relative(other, full)) > 1e-2
