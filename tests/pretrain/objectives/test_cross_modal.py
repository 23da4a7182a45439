"""ECG <-> PPG cross-modal InfoNCE: the loss equals its formula, and training aligns the real record."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import models
from pretrain import objectives
from pretrain.config import ConfigError
from pretrain.objectives.cross_modal import CrossModal


class _Flat(nn.Module):
    embed_dim = 3

    def __init__(self, t: int) -> None:
        super().__init__()
        self.lin = nn.Linear(t, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def _infonce(q: np.ndarray, k: np.ndarray, t: float) -> float:
    """Mean over rows of -log(exp(cos(q_i, k_i)/t) / sum_j exp(cos(q_i, k_j)/t)), written out loop by loop."""
    total = 0.0
    for i in range(len(q)):
        cos = [float(q[i] @ k[j]) / (np.linalg.norm(q[i]) * np.linalg.norm(k[j])) for j in range(len(k))]
        total += -(cos[i] / t - math.log(sum(math.exp(c / t) for c in cos)))
    return total / len(q)


def test_registered():
    assert "cross_modal" in objectives.names()
    assert objectives.get("cross_modal") is CrossModal


def test_loss_equals_hand_computation():
    torch.manual_seed(0)
    t = 8
    obj = CrossModal(_Flat(t), partner_model=_Flat(t), projector_hidden_dim=0, projector_dim=4, temperature=0.5,
                     gather=False)
    x = torch.randn(5, 2, t)
    out = obj({"signal": x})
    with torch.no_grad():
        a, b = x[:, 0].numpy(), x[:, 1].numpy()
        def lin(m, v):
            return v @ m.weight.numpy().T + m.bias.numpy()
        p = lin(obj.projector.net[0], lin(obj.encoder.lin, a))
        q = lin(obj.partner_projector.net[0], lin(obj.partner.lin, b))
    expected = 0.5 * (_infonce(p, q, 0.5) + _infonce(q, p, 0.5))
    assert float(out["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    sim = (p / np.linalg.norm(p, axis=1, keepdims=True)) @ (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    assert float(out["match_acc"]) == pytest.approx(np.mean(sim.argmax(1) == np.arange(5)))
    assert torch.equal(obj.embed({"signal": x}), obj.encoder.embed(x[:, :1]))


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="objective.partner_channels"):
        CrossModal(_Flat(8), partner_model=_Flat(8), primary_channels=[0], partner_channels=[0])
    with pytest.raises(ConfigError, match="objective.primary_channels"):
        CrossModal(_Flat(8), partner_model=_Flat(8), primary_channels=[])
    with pytest.raises(ConfigError, match="objective.partner_model"):
        CrossModal(_Flat(8), partner_model={"name": "no_such_encoder"})
    obj = CrossModal(_Flat(8), partner_model=_Flat(8), projector_hidden_dim=0, projector_dim=4)
    with pytest.raises(ValueError, match=r"batch\['signal'\] must be \[B, >= 2, T\]"):
        obj({"signal": torch.randn(4, 1, 8)})


def _a103l_windows(signals_dir, n: int, window_s: float = 8.0, fs: float = 64.0) -> torch.Tensor:
    """Simultaneous PLETH (row 0) and ECG lead II (row 1) windows of challenge2015/a103l, band-passed and
    z-scored per channel (PPG 0.5-8 Hz, ECG 0.5-30 Hz)."""
    from modalities.signals.filters import bandpass, normalize
    from modalities.signals.index import index_records
    from modalities.signals.resampled import read_window_resampled

    info = index_records(signals_dir / "challenge2015" / "a103l.hea")[0]
    starts = np.linspace(0.0, info.duration_s - window_s, n)
    out = []
    for s in starts:
        x = read_window_resampled(info, float(s), window_s, ["PLETH", "II"], fs)
        ppg = bandpass(x[:1], fs, 0.5, 8.0)
        ecg = bandpass(x[1:], fs, 0.5, 30.0)
        out.append(normalize(np.concatenate([ppg, ecg]), clip=5.0))
    return torch.tensor(np.stack(out), dtype=torch.float32)


@pytest.mark.slow
def test_training_on_the_real_record_lowers_the_loss(signals_dir):
    """A few full-batch steps on 24 windows of a103l (ICU record with ECG II and PLETH) drive the cross-modal loss
    from chance (log 24) towards 0: every PPG window finds its own ECG window among the 24. This shows that the
    objective trains on real paired data; it does not show alignment that generalises to unseen windows (24
    windows of one record at ~128 bpm are memorised; see the report)."""
    torch.manual_seed(0)
    x = _a103l_windows(signals_dir, 24)
    small = dict(in_channels=1, embed_dim=32, stages=[[1, 16, 1, 2, 5], [4, 24, 1, 2, 5], [4, 32, 1, 2, 5]],
                 head_channels=64)
    obj = CrossModal(models.create("efficientnet1d", **small),
                     partner_model={"name": "efficientnet1d", **small}, projector_hidden_dim=64, projector_dim=32,
                     temperature=0.1, gather=False)
    opt = torch.optim.AdamW(obj.parameters(), lr=2e-3)
    history = []
    for _ in range(12):
        out = obj({"signal": x})
        history.append((float(out["loss"].detach()), float(out["match_acc"])))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    print(f"\ncross-modal loss {history[0][0]:.3f} -> {history[-1][0]:.3f} (chance log 24 = {math.log(24):.3f}), "
          f"match accuracy {history[0][1]:.2f} -> {history[-1][1]:.2f}")
    assert history[-1][0] < 0.5 * history[0][0], history
    assert history[-1][1] > 0.9 > history[0][1]
