"""MERLIN U-Net: the published weights load into our layers and give the reference network's output; denoise
layouts, sizes and the saved sensor statistics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import models
from models.unet2d import PUBLISHED_MERLIN, MerlinUNet, load_published_merlin, tile_windows


def test_parameter_count_and_residual_output():
    net = models.create("merlin_unet", log_min=0.0, log_max=1.0)
    assert sum(p.numel() for p in net.parameters()) == 988_609  # the published models' size
    x = torch.rand(1, 1, 32, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), x - net.residual(x))
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 1, 50, 64))


@pytest.mark.parametrize("name", sorted(PUBLISHED_MERLIN))
def test_published_weights_load_exactly(name):
    net = load_published_merlin(name)
    assert net.config["log_max"] == PUBLISHED_MERLIN[name]["log_max"]
    assert float(net.dec1.weight.detach().abs().sum()) > 0


def test_published_weights_match_the_reference_network():
    """Our U-Net with the deepdespeckling weights computes exactly what deepdespeckling's own network computes."""
    from deepdespeckling.model import Model

    ours = load_published_merlin("sentinel_tops")
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    ref = Model("cpu", 32, 32)
    ref.load_state_dict(state)
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_published_weights_are_loaded_without_unpickling_objects(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a full unpickler was used")

    monkeypatch.setattr(pickle, "Unpickler", refuse)
    net = load_published_merlin("sentinel_tops")
    assert net.log_max == pytest.approx(12.385)


def test_denoise_layouts_agree_and_any_size_works():
    torch.manual_seed(1)
    net = MerlinUNet(width=8, log_min=-1.0, log_max=6.0)
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(45, 40)) + 1j * rng.normal(size=(45, 40))).astype(np.complex64) * 20
    a = net.denoise(z)
    assert a.shape == (1, 45, 40) and a.dtype == np.float32 and np.all(a > 0)
    np.testing.assert_allclose(net.denoise(np.stack([z.real, z.imag])), a, rtol=1e-6)
    np.testing.assert_allclose(net.denoise(torch.from_numpy(z)), a, rtol=1e-6)
    with pytest.raises(ValueError, match="complex"):
        net.denoise(np.abs(z))


def test_missing_sensor_statistics_are_named():
    with pytest.raises(ValueError, match="sensor statistics"):
        MerlinUNet(width=8).denoise(np.ones((32, 32), np.complex64))


def test_sensor_statistics_travel_with_the_saved_model(tmp_path):
    net = models.create("merlin_unet", width=8)
    net.set_sensor_statistics(-2.5, 7.25, 3e-4)
    models.save_pretrained(net, tmp_path / "enc")
    back = models.load_pretrained(tmp_path / "enc")
    assert (back.log_min, back.log_max, back.eps) == (-2.5, 7.25, 3e-4)
    z = np.full((32, 32), 3 + 4j, np.complex64)
    np.testing.assert_array_equal(back.denoise(z), net.eval().denoise(z))


def test_tiles_partition_the_scene_on_the_pooling_grid():
    tiles = tile_windows(1000, 700, 256, 64)
    cover = np.zeros((1000, 700), int)
    for (r0, r1, c0, c1), (k0, k1, l0, l1) in tiles:
        assert r0 % 32 == 0 and c0 % 32 == 0 and r0 <= k0 and k1 <= r1 and c0 <= l0 and l1 <= c1
        assert r1 - r0 <= 256 and c1 - c0 <= 256
        assert (k0 - r0 >= 64 or r0 == 0) and (r1 - k1 >= 64 or r1 == 1000)
        cover[k0:k1, l0:l1] += 1
    assert np.all(cover == 1)
    assert tile_windows(300, 200, 512, 64) == [((0, 300, 0, 200), (0, 300, 0, 200))]


def test_published_model_despeckles_simulated_speckle():
    """The inference maths (normalisation, log-reflectivity, real/imaginary combination) is right: the published
    Sentinel-1 weights raise PSNR far above the noisy input's on a simulated picture. (Their radiometry is off on
    our simulated sensor: mean intensity 0.78 of the input's, a sensor mismatch, so it is bounded loosely here.)"""
    from modalities.sar.doppler import centre_spectrum
    from modalities.sar.simulate import clean_reflectivity, simulate_slc

    r = clean_reflectivity("camera")[:128, 64:192]
    z, expected = simulate_slc(r, seed=11)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = load_published_merlin("sentinel_tops").denoise(centre_spectrum(z))[0]
    torch.set_num_threads(before)
    clean = np.sqrt(expected)

    def psnr(a):
        return 10 * np.log10(100.0 ** 2 / np.mean((a - clean) ** 2))

    assert psnr(out) > psnr(np.abs(z)) + 6.0
    assert 0.6 < np.mean(np.abs(z) ** 2) / np.mean(out ** 2) < 1.4


def test_held_out_ratio_divides_each_part_by_the_estimate_from_the_other():
    # with a zero residual the network is the identity: R(a) = a^2 + eps for each part, so the held-out-part
    # ratio is mean((im^2 / (re^2 + eps) + re^2 / (im^2 + eps))), computed here independently
    net = models.create("merlin_unet", width=8, log_min=-3.0, log_max=5.0, eps=1e-3)
    torch.nn.init.zeros_(net.dec1.weight)
    torch.nn.init.zeros_(net.dec1.bias)
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(32, 64)) + 1j * rng.normal(size=(32, 64))).astype(np.complex64)
    z[0, :5] = 0  # no-data pixels are left out
    re, im = z.real.astype(np.float64), z.imag.astype(np.float64)
    expected = 0.5 * (2 * im ** 2 / (re ** 2 + 1e-3) + 2 * re ** 2 / (im ** 2 + 1e-3))
    got = net.held_out_ratio(z)
    assert got == pytest.approx(expected[np.abs(z) > 0].mean(), rel=1e-4)
    parts = torch.from_numpy(np.stack([z.real, z.imag]))
    assert net.held_out_ratio(parts) == pytest.approx(got, rel=1e-6)


@pytest.mark.parametrize("name, width", [("stripmap", 48), (None, 8)])
def test_subpixel_decoder_equals_the_plain_network(name, width):
    """Inference's low-resolution decoder convolutions compute the same residual as upsample + concatenate + conv."""
    torch.manual_seed(3)
    net = load_published_merlin(name) if name else MerlinUNet(width=width, log_min=-1.0, log_max=6.0).eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        plain, fast = net.residual(x), net.residual_subpixel(x)
    assert plain.abs().max() > 0.05
    torch.testing.assert_close(fast, plain, rtol=0, atol=2e-5)
