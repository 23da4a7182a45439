"""Encoders: every registered model runs forward/backward; ViT1D matches the paper's sizes and token layout."""

from __future__ import annotations

import json

import pytest
import torch

import models
from models.transformer import sincos_positions
from models.vit1d import ViT1D, ViT1DPredictor

PAPER_PARAMS = {"vit1d_xs": 3.6e6, "vit1d_s": 14.3e6, "vit1d_b": 85.2e6}


# The fixed-channel 1-D signal encoders. eegformer_* take any channel count and keep a codebook that only the VQ
# objective trains (tests/models/test_eegformer.py); graph, point, image and fine-tuned models have their own tests.
@pytest.mark.parametrize("name", models.list_models("vit1d_*") + models.list_models("efficientnet1d*"))
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    enc = models.create(name, depth=1) if name.startswith("vit1d") else models.create(name)
    x = torch.randn(2, enc.in_channels, 500)
    z = enc(x)
    if hasattr(enc, "patch_size"):  # token encoders (the JEPA contract)
        assert z.shape == (2, 500 // enc.patch_size, enc.embed_dim)
    z.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert enc.embed(x).shape == (2, enc.embed_dim)
    json.dumps(enc.config)


@pytest.mark.parametrize("name,expected", PAPER_PARAMS.items())
def test_paper_sizes(name, expected):
    n = sum(p.numel() for p in models.create(name).parameters())
    assert abs(n - expected) / expected < 0.01, n


def test_tokens_cover_50ms_of_all_leads():
    enc = ViT1D(dim=32, depth=1, num_heads=4)
    assert enc.patch_embed.kernel_size == (25,) and enc.patch_embed.stride == (25,)
    x = torch.zeros(1, 12, 5000)
    x[0, 5, 25 * 7 + 3] = 1.0  # one sample in token 7 of lead aVF
    t = enc.tokens(x) - enc.tokens(torch.zeros_like(x))
    changed = (t.abs().sum(-1) > 0).nonzero()[:, 1].tolist()
    assert changed == [7]


def test_keep_selects_tokens_and_registers_are_dropped():
    torch.manual_seed(0)
    enc = ViT1D(dim=32, depth=0, num_heads=4, num_registers=2).eval()
    x = torch.randn(2, 12, 1000)
    keep = torch.tensor([[0, 5, 9], [1, 2, 39]])
    # depth 0: output = LayerNorm(tokens) so selection is exactly a gather of the full output
    full = enc(x)
    assert torch.allclose(enc(x, keep), torch.stack([full[0, keep[0]], full[1, keep[1]]]), atol=1e-6)


def test_bad_input_shapes_are_named():
    enc = ViT1D(dim=32, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="multiple of the patch size 25"):
        enc(torch.randn(1, 12, 1001))
    with pytest.raises(ValueError, match=r"expected input \[B, 12, T\]"):
        enc(torch.randn(1, 8, 1000))


def test_sincos_positions_formula():
    p = sincos_positions(7, 6)
    for pos in range(7):
        for i in range(3):
            w = 1.0 / 10000 ** (2 * i / 6)
            assert p[pos, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(pos * w, dtype=torch.float64)).item(), abs=1e-6)
            assert p[pos, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(pos * w, dtype=torch.float64)).item(), abs=1e-6)


def test_predictor_outputs_one_vector_per_target():
    pred = ViT1DPredictor(embed_dim=32, dim=16, depth=1, num_heads=2)
    ctx = torch.randn(2, 5, 32)
    out = pred(ctx, torch.arange(5).expand(2, 5), torch.arange(5, 40).expand(2, 35), 40)
    assert out.shape == (2, 35, 32)
    # targets differ only by position: outputs must differ across positions
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown encoder 'vit9'"):
        models.create("vit9")
    with pytest.raises(ValueError, match="bad options for 'vit1d_xs'"):
        models.create("vit1d_xs", widht=3)


def test_initialisation_follows_ecg_jepa():
    torch.manual_seed(0)
    enc = ViT1D(dim=192, depth=8, num_heads=4)
    # truncated normal with std 0.02 (cut at +-2 absolute, so the std stays 0.02); residual projections
    # 0.02 / sqrt(2 * depth) = 0.005
    assert enc.patch_embed.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert enc.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert enc.blocks[3].attn.proj.weight.std().item() == pytest.approx(0.005, rel=0.05)
    assert enc.blocks[3].mlp[-1].weight.std().item() == pytest.approx(0.005, rel=0.05)


def test_fan_in_patch_init_puts_content_on_the_position_scale():
    torch.manual_seed(0)
    enc = ViT1D(in_channels=12, dim=192, depth=8, num_heads=4, patch_init="fan_in")
    w = enc.patch_embed.weight
    # LeCun normal: std 1 / sqrt(12 leads * 25 samples), truncated at 2 std after rescaling by 1 / 0.8796
    assert w.std().item() == pytest.approx(300 ** -0.5, rel=0.03)
    assert w.abs().max().item() <= 2 * 300 ** -0.5 / 0.87962566 + 1e-6
    # the other layers keep ECG-JEPA's initialisation
    assert enc.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    # unit-variance leads -> token content of about unit variance, the scale of the sin-cos positions (0.5)
    content = enc.patch_embed(torch.randn(8, 12, 5000)).var().item()
    assert 0.7 < content < 1.3
    with pytest.raises(ValueError, match="model.patch_init"):
        ViT1D(patch_init="xavier")


def test_patch_norm_gives_token_content_unit_scale_whatever_the_leads_filled():
    torch.manual_seed(0)
    x12 = torch.randn(4, 12, 5000)
    x2 = x12.clone()
    x2[:, 2:] = 0.0  # a 2-lead record in the 12-lead layout
    for patch_init in ("trunc_normal", "fan_in"):
        plain = ViT1D(in_channels=12, dim=192, depth=1, num_heads=4, patch_init=patch_init)
        normed = ViT1D(in_channels=12, dim=192, depth=1, num_heads=4, patch_init=patch_init, patch_norm=True)
        normed.patch_embed.load_state_dict(plain.patch_embed.state_dict())
        pos = sincos_positions(200, 192, x12.device, x12.dtype)
        with torch.no_grad():
            # without it, content energy follows the filled leads: 2 of 12 leads -> 1/6 of the energy
            e12, e2 = ((plain.tokens(x) - pos).pow(2).mean().item() for x in (x12, x2))
            assert e2 / e12 == pytest.approx(2 / 12, rel=0.1)
            # with it, every token's content has mean 0 and mean square 1 over its 192 features
            for x in (x12, x2):
                c = normed.tokens(x) - pos
                assert c.mean(-1).abs().max().item() < 1e-5
                assert c.pow(2).mean(-1).sub(1).abs().max().item() < 1e-3
    with pytest.raises(ValueError, match="model.patch_norm"):
        ViT1D(patch_norm="token")
