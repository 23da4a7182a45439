"""The 1-D EfficientNet: shapes, size, the portable format and gradients."""

from __future__ import annotations

import pytest
import torch

import models
from models.efficientnet1d import DEFAULT_STAGES, EfficientNet1D, MBConv1D


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registered_and_configured():
    enc = models.create("efficientnet1d", in_channels=1)
    assert "efficientnet1d" in models.list_models()
    assert enc.config == {"name": "efficientnet1d", "in_channels": 1, "embed_dim": 256}
    assert enc.embed_dim == 256 and enc.in_channels == 1


def test_sixteen_mbconv_blocks_with_se_and_swish():
    enc = EfficientNet1D()
    blocks = [m for m in enc.modules() if isinstance(m, MBConv1D)]
    assert len(blocks) == 16 == sum(s[2] for s in DEFAULT_STAGES)
    assert any(isinstance(m, torch.nn.SiLU) for m in enc.modules())
    assert sum(type(m).__name__ == "SqueezeExcite1D" for m in enc.modules()) == 16


def test_parameter_count_about_3_2_million(capsys):
    n4, n1 = _count(models.create("efficientnet1d")), _count(models.create("efficientnet1d", in_channels=1))
    with capsys.disabled():
        print(f"\nefficientnet1d parameters: {n4:,} (4 channels), {n1:,} (1 channel)")
    assert n4 == 3_219_148 and n1 == 3_218_860  # the counts stated in the module docstring
    assert 3.1e6 < n4 < 3.3e6


@pytest.mark.parametrize("t", [640, 1000, 3840])
def test_shapes(t):
    enc = models.create("efficientnet1d", in_channels=4).eval()
    x = torch.randn(2, 4, t)
    with torch.no_grad():
        z = enc.embed(x)
        assert z.shape == (2, 256) and torch.equal(z, enc(x))
        assert enc.features(x).shape == (2, 384, -(-t // 32))


def test_wrong_input_is_named():
    enc = models.create("efficientnet1d", in_channels=1)
    with pytest.raises(ValueError, match=r"expected input \[B, 1, T\]"):
        enc(torch.randn(2, 4, 640))
    with pytest.raises(ValueError, match="model.head_channels"):
        models.create("efficientnet1d", head_channels=0)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    enc = models.create("efficientnet1d", in_channels=2)
    enc.embed(torch.randn(2, 2, 256)).pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_residual_only_when_shapes_match():
    assert MBConv1D(16, 16, 6, 3, 1).residual
    assert not MBConv1D(16, 24, 6, 3, 1).residual and not MBConv1D(16, 16, 6, 3, 2).residual


def test_fresh_encoder_keeps_signal_scale_in_eval_mode():
    """The random-init control of the probes must not be degenerate: activations stay O(0.01-1) through the
    16 blocks in eval mode (the fan_out initialisation gave ~1e-13)."""
    torch.manual_seed(0)
    enc = models.create("efficientnet1d", in_channels=1).eval()
    x = torch.randn(16, 1, 512)
    with torch.no_grad():
        feats = enc.features(x)
        z = enc.embed(x)
    assert 1e-3 < float(feats.std()) < 10
    assert float(torch.nn.functional.normalize(z, dim=1).std(0).mean()) > 0.01  # embeddings differ between inputs
