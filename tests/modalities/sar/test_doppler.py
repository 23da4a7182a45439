"""Doppler centring on the real ENVISAT and UAVSAR crops: symmetric spectra, independent real and imaginary parts."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.sar.doppler import (CentredView, centre_spectrum, doppler_centroid, real_imag_correlation,
                                    spectrum_asymmetry, symmetrise, symmetry_gains)
from modalities.sar.readers import open_slc, read_slc
from modalities.sar.simulate import clean_reflectivity, simulate_slc
from tests.conftest import shared_data

CROPS = ["envisat_slc_500x500_reim.npy", "uavsar_winnipeg_slc_HH_250x250_reim.npy"]


@pytest.mark.parametrize("name", CROPS)
def test_centring_makes_real_crops_symmetric_and_parts_independent(name):
    z = read_slc(shared_data("sar") / name)
    centred = centre_spectrum(z)
    s = symmetrise(centred, symmetry_gains(centred))
    az, rg = spectrum_asymmetry(s)
    assert az < 0.08 and rg < 0.08, (az, rg)
    assert real_imag_correlation(s) < 0.03
    # the shift alone already does most of it; amplitude and mean intensity are kept
    np.testing.assert_allclose(np.abs(centred), np.abs(z), rtol=1e-5, atol=1e-6)
    assert np.mean(np.abs(s) ** 2) == pytest.approx(np.mean(np.abs(z) ** 2), rel=0.01)
    assert abs(doppler_centroid(centred)[0]) < 2.0 / z.shape[0]


def test_envisat_needed_it():
    """The ENVISAT crop is far from zero Doppler (its spectrum centre is ~0.18 cycles/pixel): before centring its
    azimuth spectrum is strongly asymmetric and the real part predicts the neighbouring imaginary part."""
    z = read_slc(shared_data("sar") / CROPS[0])
    assert spectrum_asymmetry(z)[0] > 0.5
    assert real_imag_correlation(z) > 0.3
    assert doppler_centroid(z)[0] == pytest.approx(0.176, abs=0.01)


def test_known_doppler_of_a_simulated_image_is_recovered():
    z, _ = simulate_slc(clean_reflectivity("grass")[:256, :256], seed=3, doppler=(-0.21, 0.07))
    f_az, f_rg = doppler_centroid(z)
    assert f_az == pytest.approx(-0.21, abs=0.005) and f_rg == pytest.approx(0.07, abs=0.005)
    assert real_imag_correlation(z) > 0.2
    assert real_imag_correlation(centre_spectrum(z)) < 0.03


def test_centred_view_windows_equal_the_centred_scene():
    scene = open_slc(shared_data("sar") / CROPS[1])
    z = scene.read()
    f_az, f_rg = doppler_centroid(z)
    full = centre_spectrum(z, f_az, f_rg)
    view = CentredView(scene, f_az, f_rg)
    np.testing.assert_allclose(view[37:101, 5:230], full[37:101, 5:230], rtol=1e-5, atol=1e-5)
    assert view.shape == z.shape and view.dtype == np.complex64
