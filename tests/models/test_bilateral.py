"""Attention-guided bilateral filter: the hand-written forward/backward against direct computations, any image
size, the sigma_r region knob, sigma maps, and the portable format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from models.bilateral import BilateralDenoiser, BilateralFilterFunction, ChunkedAttentionFunction, bilateral_filter


def direct_bilateral(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, sr: torch.Tensor, r: int) -> torch.Tensor:
    """The textbook bilateral filter with an unfolded window (reflect border), per-pixel widths."""
    b, _, h, w = x.shape
    k = 2 * r + 1
    win = F.unfold(F.pad(x, (r,) * 4, mode="reflect"), k).view(b, k * k, h, w)
    dy, dx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    dx, dy = dx.reshape(1, -1, 1, 1).to(x), dy.reshape(1, -1, 1, 1).to(x)
    logw = -dx**2 / (2 * sx**2) - dy**2 / (2 * sy**2) - (win - x) ** 2 / (2 * sr**2)
    wgt = torch.exp(logw)
    return (wgt * win).sum(1, keepdim=True) / wgt.sum(1, keepdim=True)


def test_filter_equals_the_direct_formula_and_its_gradients():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 7, 6, dtype=torch.double)
    sx, sy = torch.rand_like(x) * 2 + 0.3, torch.rand_like(x) * 2 + 0.3
    sr = torch.rand_like(x) * 0.3 + 0.05
    r = 3
    ours = bilateral_filter(x, sx, sy, sr, radius=r)
    torch.testing.assert_close(ours.double(), direct_bilateral(x, sx, sy, sr, r), rtol=1e-5, atol=1e-6)
    xp = F.pad(x[..., :5, :4], (2,) * 4, mode="reflect").requires_grad_()
    na, nb, nc = ((-0.5 / s[..., :5, :4] ** 2).requires_grad_() for s in (sx, sy, sr))
    assert torch.autograd.gradcheck(lambda *a: BilateralFilterFunction.apply(*a, 2), (xp, na, nb, nc))


def test_chunked_attention_equals_softmax_attention_with_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 37, 8, dtype=torch.double) for _ in range(3))
    torch.testing.assert_close(ChunkedAttentionFunction.apply(q, k, v, 16), F.scaled_dot_product_attention(q, k, v))
    q, k, v = (torch.randn(1, 9, 4, dtype=torch.double, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: ChunkedAttentionFunction.apply(a, b, c, 4), (q, k, v))


def test_any_size_is_padded_and_a_constant_image_stays_constant():
    model = BilateralDenoiser().eval()
    for shape in [(1, 37, 45), (1, 1, 1), (1, 8, 8)]:
        x = torch.full(shape, 40.0)
        out = model.denoise(x)
        assert out.shape == shape
        torch.testing.assert_close(out, x, atol=1e-3, rtol=0)  # normalised weights: a flat image is a fixed point
    x = torch.randn(1, 37, 45) * 50
    maps = model.explain(x)
    assert sorted(maps) == sorted(f"stage{i}_sigma_{a}" for i in (1, 2) for a in "xyr")
    assert all(m.shape == (37, 45) for m in maps.values())
    assert float(maps["stage1_sigma_r"].mean()) == pytest.approx(0.03 * 4096, rel=0.3)  # the init, in HU


def test_sigma_r_knob_smooths_only_its_region():
    torch.manual_seed(0)
    model = BilateralDenoiser().eval()
    x = 40.0 + torch.randn(1, 64, 64) * 150  # noisy uniform tissue
    base = model.denoise(x)
    region = torch.ones(64, 64)
    region[:, :32] = 8.0  # widen the range kernel on the left half
    knob = model.denoise(x, sigma_r_scale=region)
    reach = 2 * 2  # two stages of radius ceil(max sigma) = 2 at this initialisation
    assert float(knob[0, :, :32 - reach].std()) < 0.8 * float(base[0, :, :32 - reach].std())
    # outside, only the second stage's sigmas move (its attention is global over the first stage's output): by
    # a negligible amount next to the change inside
    outside = (knob[0, :, 32 + reach:] - base[0, :, 32 + reach:]).abs().max()
    inside = (knob[0, :, :32 - reach] - base[0, :, :32 - reach]).abs().mean()
    assert float(outside) < 0.01 * float(inside)
    assert torch.equal(model.denoise(x, sigma_r_scale=1.0), base)


def test_parameter_counts_are_the_papers():
    model = models.create("bilateral")
    assert sum(p.numel() for p in model.parameters()) == 2 * 1819  # ~1.8k per stage, as in the paper
    net = models.create("zsn2n")
    assert sum(p.numel() for p in net.parameters()) == 21313
    assert net.denoise(torch.zeros(1, 16, 16)).shape == (1, 16, 16)


def test_filter_reduces_noise_of_a_real_edge_image():
    # a step edge with noise: the untrained filter (init widths) already lowers the error and keeps the edge
    rng = np.random.default_rng(0)
    clean = np.where(np.arange(64)[None, :] < 32, -100.0, 300.0).repeat(64, 0)
    noisy = torch.tensor(clean + rng.normal(0, 60, clean.shape), dtype=torch.float32)[None]
    out = BilateralDenoiser().eval().denoise(noisy)[0].numpy()
    assert np.abs(out - clean).mean() < 0.7 * np.abs(noisy[0].numpy() - clean).mean()
    assert out[:, 28].mean() < 0 < out[:, 36].mean()


def test_hu_range_in_the_data_units_makes_the_filter_unit_free(tmp_path):
    # a [0, 1] image (HU mapped through [-1024, 3072]) with hu_range [0, 1] is filtered exactly as the HU image with
    # the HU default: same internal image, same sigmas; the output comes back in each input's units
    torch.manual_seed(0)
    hu = torch.randn(1, 32, 40) * 60.0 + torch.linspace(-1000.0, 400.0, 40)
    unit = (hu + 1024.0) / 4096.0
    model = models.create("bilateral")
    assert model.hu_range == (-1024.0, 3072.0) and "hu_range" not in model.config
    out_hu = model.denoise(hu)
    sigma_r_hu = model.explain(hu)["stage1_sigma_r"]
    model.set_hu_range([0.0, 1.0])
    assert model.hu_range == (0.0, 1.0) and model.config["hu_range"] == [0.0, 1.0]
    out_unit = model.denoise(unit)
    torch.testing.assert_close(out_unit, (out_hu + 1024.0) / 4096.0, rtol=0, atol=2e-6)
    torch.testing.assert_close(model.explain(unit)["stage1_sigma_r"] * 4096.0, sigma_r_hu, rtol=1e-4, atol=1e-3)
    # the range travels with the artefact
    models.save_pretrained(model, tmp_path / "enc")
    loaded = models.load_pretrained(tmp_path / "enc")
    assert loaded.hu_range == (0.0, 1.0)
    torch.testing.assert_close(loaded.denoise(unit), out_unit)
    with pytest.raises(ValueError, match="increasing"):
        model.set_hu_range([1.0, 0.0])
