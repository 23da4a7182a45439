"""Tiled despeckling: no seams (tiled equals untiled where the scene fits), and scenes streamed from disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.unet2d import MerlinUNet, load_published_merlin, tile_windows
from modalities.sar.doppler import centre_spectrum
from modalities.sar.readers import read_slc
from modalities.sar.tiling import centred_scene, despeckle_scene
from tests.conftest import shared_data



@pytest.fixture(scope="module")
def envisat():
    return shared_data("sar") / "envisat_slc_500x500_reim.npy"


@pytest.mark.slow
def test_tiled_equals_untiled_without_seams(envisat, one_thread):
    """Published (trained) weights on a real crop: 5 tiles of 192 with 64-pixel margins against one pass."""
    z = centre_spectrum(read_slc(envisat))[150:342, 100:420]
    net = load_published_merlin("sentinel_tops", tile=512, overlap=64)
    whole = np.log(net.denoise(z)[0])
    net.tile = 192
    assert len(tile_windows(*z.shape, net.tile, net.overlap)) == 5
    tiled = np.log(net.denoise(z)[0])
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.01 and diff.max() < 0.15, (diff.mean(), diff.max())
    # a seam would be an extra jump between the columns on either side of a core boundary (64, 128, 192, 256),
    # beyond the scene's own change there (the crop has vertical bright lines)
    steps_tiled = np.abs(np.diff(tiled, axis=1)).mean(axis=0)
    steps_whole = np.abs(np.diff(whole, axis=1)).mean(axis=0)
    extra = np.abs(steps_tiled - steps_whole)[[63, 127, 191, 255]]
    assert extra.max() < 0.25 * np.median(steps_whole), (extra, np.median(steps_whole))  # < 1 % in amplitude


def test_scene_streamed_from_disk_equals_in_memory(tmp_path, one_thread):
    path = shared_data("sar") / "uavsar_winnipeg_slc_HH_250x250_reim.npy"
    torch.manual_seed(0)
    net = MerlinUNet(width=8, log_min=-4.0, log_max=1.0, eps=1e-6, tile=128, overlap=32).eval()
    out = despeckle_scene(net, path, tmp_path / "amplitude.npy", stats_window=256)
    streamed = np.load(out, mmap_mode="r")
    view = centred_scene(path, stats_window=256)
    expected = net.denoise(centre_spectrum(read_slc(path), view.f_az, view.f_rg))
    assert streamed.shape == (1, 250, 250)
    np.testing.assert_allclose(streamed, expected, rtol=1e-5)
    assert not (tmp_path / "amplitude.npy.tmp").exists()
