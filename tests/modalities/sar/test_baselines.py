"""Boxcar, Lee and refined Lee: smoothing where the scene is flat, edges kept where it is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalities.sar.baselines import boxcar, intensity, lee, refined_lee
from modalities.sar.simulate import simulate_slc


@pytest.fixture(scope="module")
def step_scene():
    r = np.full((128, 128), 100.0)
    r[:, 64:] = 2500.0  # a vertical edge, 25x in intensity
    z, expected = simulate_slc(r, seed=2, doppler=(0.0, 0.0))
    return z, np.sqrt(expected)


@pytest.mark.parametrize("filt", [boxcar, lee, refined_lee])
def test_filters_raise_looks_on_flat_areas_and_psnr(filt, step_scene):
    z, clean = step_scene
    out = filt(z)
    assert out.shape == (1, 128, 128) and out.dtype == np.float32
    flat = out[0, 10:118, 5:50] ** 2
    assert flat.mean() ** 2 / flat.var() > 3.0  # ENL of the input is 1
    mse_in = np.mean((np.abs(z) - clean) ** 2)
    assert np.mean((out[0] - clean) ** 2) < 0.5 * mse_in


def test_lee_filters_keep_the_edge_sharper_than_the_boxcar(step_scene):
    z, clean = step_scene
    def edge_error(a):  # error in the 6 columns next to the edge
        return np.mean((a[0, :, 58:70] - clean[:, 58:70]) ** 2)
    assert edge_error(refined_lee(z)) < edge_error(boxcar(z))
    assert edge_error(lee(z)) < edge_error(boxcar(z))


def test_inputs_torch_and_parts_layouts():
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(16, 20)) + 1j * rng.normal(size=(16, 20))).astype(np.complex64)
    np.testing.assert_allclose(intensity(torch.from_numpy(z)), np.abs(z.astype(np.complex128)) ** 2, rtol=1e-6)
    np.testing.assert_allclose(intensity(np.stack([z.real, z.imag])), intensity(z), rtol=1e-6)
    with pytest.raises(ValueError):
        intensity(np.abs(z))
