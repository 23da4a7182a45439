"""EEGFormer encoder: frequency tokens, channel independence, any channel count, VQ codebook, JEPA token interface."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from models.eegformer import EEGFormer, VectorQuantizer, codebook_perplexity, patch_spectra


def tiny(**kw) -> EEGFormer:
    torch.manual_seed(0)
    return models.create("eegformer_xs", **kw).eval()


def test_patch_spectra_are_log_magnitudes_of_hann_windowed_segments():
    x = torch.randn(2, 3, 96, dtype=torch.float64)
    got = patch_spectra(x, 32).numpy()
    seg = x.numpy().reshape(2, 3, 3, 32)
    want = np.log1p(np.abs(np.fft.rfft(seg * np.hanning(32), axis=-1)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3, 7])
def test_any_channel_count(channels):
    enc = tiny()
    x = torch.randn(2, channels, 512)
    assert enc.embed(x).shape == (2, enc.embed_dim)
    assert enc(x).shape == (2, 16, enc.embed_dim)
    assert enc.channel_tokens(x).shape == (2, channels, 16, enc.embed_dim)
    assert enc.codes(x).shape == (2, channels, 16)


@pytest.mark.parametrize("name", models.list_models("eegformer*"))
def test_forward_backward_reaches_every_encoder_weight(name):
    torch.manual_seed(0)
    enc = models.create(name)
    x = torch.randn(2, 3, 512)
    enc(x).sum().backward()
    # the quantizer's projection is trained through the VQ objective, not by forward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if not n.startswith("quantizer."))
    enc.zero_grad()
    enc.quantizer(enc.channel_tokens(x))[0].sum().backward()
    assert enc.quantizer.proj.weight.grad is not None
    json.dumps(enc.config)


def test_channels_are_encoded_independently():
    enc = tiny()
    x = torch.randn(2, 4, 256)
    together = enc.channel_tokens(x)
    for c in range(4):
        alone = enc.channel_tokens(x[:, c:c + 1])[:, 0]
        torch.testing.assert_close(together[:, c], alone, rtol=1e-4, atol=1e-5)
    # the pooled embedding is the mean of per-channel token means, so channel order does not matter
    torch.testing.assert_close(enc.embed(x), enc.embed(x[:, [3, 1, 0, 2]]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(enc.embed_channels(x).mean(1), enc.embed(x), rtol=1e-4, atol=1e-5)


def test_keep_selects_the_same_time_tokens_in_every_channel():
    enc = tiny(depth=0)  # without attention a visible token's output does not depend on the others
    x = torch.randn(2, 3, 512)
    keep = torch.tensor([[0, 5, 9], [2, 3, 15]])
    full = enc.channel_tokens(x)
    part = enc(x, keep)
    want = torch.stack([full[b][:, keep[b]].mean(0) for b in range(2)])
    torch.testing.assert_close(part, want, rtol=1e-4, atol=1e-5)


def test_fixed_channel_count_is_checked():
    enc = models.create("eegformer_xs", in_channels=4)
    with pytest.raises(ValueError, match="expected 4 channels"):
        enc.embed(torch.randn(1, 3, 512))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc.embed(torch.randn(1, 4, 500))


def test_save_and_load_keep_codebook(tmp_path):
    enc = tiny()
    enc.quantizer.update(F.normalize(torch.randn(64, 32), dim=-1), torch.randint(0, 128, (64,)))
    models.save_pretrained(enc, tmp_path / "enc")
    back = models.load_pretrained(tmp_path / "enc")
    x = torch.randn(2, 3, 512)
    torch.testing.assert_close(back.embed(x), enc.embed(x))
    assert torch.equal(back.codes(x), enc.codes(x))
    assert torch.equal(back.quantizer.codebook, enc.quantizer.codebook)


def test_quantizer_picks_nearest_code_and_passes_gradient_straight_through():
    q = VectorQuantizer(dim=2, codebook_size=3, code_dim=2)
    with torch.no_grad():
        q.proj.weight.copy_(torch.eye(2))
        q.proj.bias.zero_()
        q.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    h = torch.tensor([[2.0, 0.5], [0.1, 3.0], [-4.0, -1.0]], requires_grad=True)
    z_q, codes, commitment, z = q(h)
    assert codes.tolist() == [0, 1, 2]
    zn = F.normalize(h.detach(), dim=-1)
    e = q.codebook[codes]
    torch.testing.assert_close(z_q, e)  # forward value is the code
    assert commitment.item() == pytest.approx(((zn - e) ** 2).sum(-1).mean().item(), rel=1e-6)
    # backward: d(sum(g * z_q))/dh equals d(sum(g * z))/dh (straight-through estimator)
    g = torch.randn(3, 2)
    (grad_st,) = torch.autograd.grad((g * z_q).sum(), h)
    h2 = h.detach().clone().requires_grad_(True)
    (grad_z,) = torch.autograd.grad((g * F.normalize(h2, dim=-1)).sum(), h2)
    torch.testing.assert_close(grad_st, grad_z)


def test_codebook_ema_update_and_dead_code_restart():
    q = VectorQuantizer(dim=2, codebook_size=3, code_dim=2, decay=0.5, dead_threshold=0.3)
    start = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    with torch.no_grad():
        q.codebook.copy_(start)
        q.ema_sum.copy_(start)
        q.ema_count.copy_(torch.tensor([1.0, 1.0, 0.5]))
    z = F.normalize(torch.tensor([[1.0, 0.2], [0.8, -0.1], [0.1, 1.0]]), dim=-1)
    codes = torch.tensor([0, 0, 1])
    restarted = q.update(z, codes)
    count = torch.tensor([0.5 + 0.5 * 2, 0.5 + 0.5 * 1, 0.25])
    assert restarted == 1  # code 2: 0.25 < 0.3, restarted at one of the batch's vectors with count 1
    torch.testing.assert_close(q.ema_count[:2], count[:2])
    assert q.ema_count[2].item() == 1.0
    want0 = F.normalize(0.5 * start[0] + 0.5 * (z[0] + z[1]), dim=0)
    want1 = F.normalize(0.5 * start[1] + 0.5 * z[2], dim=0)
    torch.testing.assert_close(q.codebook[0], want0)
    torch.testing.assert_close(q.codebook[1], want1)
    assert any(torch.allclose(q.codebook[2], v) for v in z)


@pytest.mark.parametrize("codes, usage, perplexity", [
    ([0, 0, 0, 0], 0.25, 1.0),
    ([0, 0, 1, 1], 0.5, 2.0),
    ([0, 1, 2, 3], 1.0, 4.0),
    ([0, 0, 0, 1], 0.5, math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))),
])
def test_codebook_usage_and_perplexity(codes, usage, perplexity):
    u, p = codebook_perplexity(torch.tensor(codes), 4)
    assert u == pytest.approx(usage)
    assert p == pytest.approx(perplexity)


def test_jepa_trains_the_channel_independent_encoder():
    from pretrain.objectives import create

    torch.manual_seed(0)
    obj = create(models.create("eegformer_xs"), {"name": "jepa"})
    x = torch.randn(3, 5, 512)
    out = obj({"signal": x, "seed": torch.tensor([1, 2, 3]), "step_seed": 4})
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert obj.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert obj.export_encoder().embed(x).shape == (3, 64)


def test_fan_in_token_embedding_matches_the_position_scale():
    torch.manual_seed(0)
    enc = EEGFormer(dim=64, depth=1, num_heads=4, codebook_size=16, patch_init="fan_in")
    # 17 frequency bins per 32-sample token -> LeCun-normal std 1 / sqrt(17)
    assert enc.patch_embed.weight.std().item() == pytest.approx(17 ** -0.5, rel=0.1)
    default = EEGFormer(dim=64, depth=1, num_heads=4, codebook_size=16)
    assert default.patch_embed.weight.std().item() == pytest.approx(0.02, rel=0.1)
    with pytest.raises(ValueError, match="model.patch_init"):
        EEGFormer(patch_init="orthogonal")
