"""VQ spectral reconstruction (EEGFormer): loss formula, straight-through gradient, codebook statistics, no collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from pretrain.config import ConfigError
from pretrain.objectives import create


def small(beta: float = 0.25, **model_kw):
    torch.manual_seed(0)
    return create(models.create("eegformer_xs", **model_kw), {"name": "vq_reconstruction", "beta": beta})


def test_loss_equals_an_independent_computation():
    obj = small(beta=0.4).eval()  # eval: no codebook update inside forward
    x = torch.randn(2, 3, 256)
    out = obj({"signal": x})
    with torch.no_grad():
        enc, q = obj.encoder, obj.encoder.quantizer
        h = enc.channel_tokens(x)
        z = F.normalize(q.proj(h), dim=-1)
        dist = torch.cdist(z.reshape(-1, z.shape[-1]), q.codebook)  # nearest code in Euclidean distance
        codes = dist.argmin(-1).reshape(z.shape[:-1])
        e = q.codebook[codes]
        recon = obj.decoder(e.flatten(0, 1)).numpy()
        seg = x.numpy().reshape(2 * 3, 8, 32)
        target = np.log1p(np.abs(np.fft.rfft(seg * np.hanning(32), axis=-1)))
        recon_loss = ((recon - target) ** 2).mean()
        commitment = ((z - e) ** 2).sum(-1).mean().item()
    assert out["recon"].item() == pytest.approx(recon_loss, rel=1e-4)
    assert out["commitment"].item() == pytest.approx(commitment, rel=1e-4)
    assert out["loss"].item() == pytest.approx(recon_loss + 0.4 * commitment, rel=1e-4)
    u, p = out["codebook_usage"].item(), out["perplexity"].item()
    counts = np.bincount(codes.reshape(-1).numpy(), minlength=q.codebook_size)
    share = counts[counts > 0] / counts.sum()
    assert u == pytest.approx((counts > 0).mean())
    assert p == pytest.approx(math.exp(-(share * np.log(share)).sum()), rel=1e-6)


def test_reconstruction_gradient_reaches_the_encoder_through_the_codes():
    obj = small(beta=0.0)  # only the reconstruction term: the encoder learns through the straight-through path
    out = obj({"signal": torch.randn(2, 3, 256)})
    out["loss"].backward()
    assert obj.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert obj.encoder.quantizer.proj.weight.grad.abs().sum() > 0
    assert obj.decoder.proj_out.weight.grad.abs().sum() > 0
    assert not obj.encoder.quantizer.codebook.requires_grad


def test_training_forward_updates_the_codebook_and_restarts_unused_codes():
    obj = small().train()
    before = obj.encoder.quantizer.codebook.clone()
    out = obj({"signal": torch.randn(2, 3, 256)})
    # counts start at 0, so the first step restarts every code that got no token at a token of the batch
    assert out["dead_codes"].item() > 0
    assert not torch.equal(before, obj.encoder.quantizer.codebook)


def test_encoder_without_codebook_is_refused():
    with pytest.raises(ConfigError, match="eegformer"):
        create(models.create("vit1d_xs", dim=32, depth=1, num_heads=4), {"name": "vq_reconstruction"})


def test_short_run_on_simulated_eeg_keeps_the_codebook_alive(tmp_path):
    """30 steps on simulated EEG windows: the codebook does not collapse (perplexity far above 1)."""
    from modalities.eeg import build_dataset
    from modalities.eeg.simulate import simulate_corpus

    root = simulate_corpus(tmp_path / "sim", n_subjects=2, duration_s=40.0)
    ds = build_dataset({"path": str(root), "fs": 128, "window_s": 4.0, "n_channels": 4, "band": [0.5, 45.0],
                        "notch_hz": [50.0, 60.0]}, "train")
    obj = small()
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3)
    first = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this tiny model is several times slower on two busy threads than on one
    try:
        for step in range(30):
            x = torch.stack([ds[(step * 8 + i) % len(ds), step * 8 + i]["signal"] for i in range(8)])
            out = obj({"signal": x})
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            first = first if first is not None else out["recon"].item()
    finally:
        torch.set_num_threads(threads)
    assert out["recon"].item() < 0.6 * first
    assert out["perplexity"].item() > 10.0
    assert out["codebook_usage"].item() > 0.1
