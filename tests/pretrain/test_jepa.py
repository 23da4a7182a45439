"""JEPA objective: loss = L1(predictor(context), LayerNorm(teacher features)) on masked tokens, EMA teacher."""

from __future__ import annotations

import pytest
import torch

import models
from pretrain.config import ConfigError
from pretrain.objectives import create


def small_jepa(**kw):
    torch.manual_seed(0)
    enc = models.create("vit1d_xs", dim=32, depth=2, num_heads=4)
    return create(enc, {"name": "jepa", **kw})


def test_loss_equals_its_formula():
    obj = small_jepa()
    x = torch.randn(3, 12, 1000)
    batch = {"signal": x, "seed": torch.tensor([1, 2, 3]), "step_seed": 9}
    out = obj(batch)
    keep, masked = obj.masks(batch, 40)
    # independent recomputation, token by token
    with torch.no_grad():
        h = obj.teacher(x)
        ctx = obj.encoder(x, keep)
        pred = obj.predictor(ctx, keep, masked, 40)
        total, count = 0.0, 0
        for b in range(3):
            for j, t in enumerate(masked[b].tolist()):
                v = h[b, t]
                target = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5)
                total += (pred[b, j] - target).abs().sum().item()
                count += v.numel()
    assert out["loss"].item() == pytest.approx(total / count, rel=1e-5)
    assert 0.15 <= out["keep_frac"].item() <= 0.25


def test_only_student_and_predictor_get_gradients():
    obj = small_jepa()
    out = obj({"signal": torch.randn(2, 12, 1000), "seed": torch.tensor([1, 2]), "step_seed": 1})
    out["loss"].backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    assert any(p.grad is not None for p in obj.encoder.parameters())
    assert any(p.grad is not None for p in obj.predictor.parameters())


def test_teacher_follows_momentum_schedule():
    obj = small_jepa()
    before = [p.clone() for p in obj.teacher.parameters()]
    with torch.no_grad():
        for p in obj.encoder.parameters():
            p.add_(1.0)
    obj.on_step_end(50, 100)  # momentum halfway: 0.99875
    m = 0.998 + (0.9995 - 0.998) * 0.5
    for b, t, s in zip(before, obj.teacher.parameters(), obj.encoder.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * s, atol=1e-6)
    assert obj.export_encoder() is obj.teacher


def test_predictor_defaults_follow_the_paper():
    enc = models.create("vit1d_xs")
    obj = create(enc, {"name": "jepa"})
    assert obj.predictor.proj_in.out_features == 96 and len(obj.predictor.blocks) == 8
    assert obj.predictor.blocks[0].attn.num_heads == 4


@pytest.mark.parametrize("opt,msg", [
    ({"keep": [0.5, 0.2]}, "objective.keep"),
    ({"loss": "l2"}, "objective.loss"),
    ({"min_block": 0}, "objective.min_block"),
    ({"ema": [0.9, 1.5]}, "objective.ema"),
    ({"predictor_dim": 30, "predictor_heads": 4}, "objective.predictor"),
    ({"tempreature": 0.1}, "objective.tempreature: unknown option for jepa"),
])
def test_bad_options_are_named(opt, msg):
    with pytest.raises(ConfigError, match=msg):
        small_jepa(**opt)
