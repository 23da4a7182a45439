"""RankMe, the collapse detector and the probes, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from pretrain import loop
from pretrain.evaluate import balanced_accuracy, collapsed, embedding_std, knn_accuracy, linear_probe, rankme


def test_rankme_hand_case():
    z = torch.zeros(5, 4)
    z[0, 0], z[1, 1] = 3.0, 1.0  # singular values 3, 1, 0, 0
    eps = 1e-5
    p = np.array([0.75 + eps, 0.25 + eps, eps, eps])
    assert rankme(z) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert rankme(torch.eye(16)) == pytest.approx(16, rel=1e-3)


def test_constant_encoder_is_flagged_as_collapsed():
    enc = models.create("vit1d_xs", depth=2)
    with torch.no_grad():
        for p in enc.parameters():
            p.zero_()
    z = enc.embed(torch.randn(64, 12, 1000))
    assert torch.all(z == z[0])  # constant output
    assert rankme(z) == pytest.approx(1.0, abs=1e-3)
    assert embedding_std(z) == pytest.approx(0.0, abs=1e-9)
    assert collapsed(rankme(z), best_rank=1.0)
    assert collapsed(3.0, best_rank=20.0) and not collapsed(10.0, best_rank=20.0)


def test_collapse_warning_in_a_real_run(tmp_path, signals_dir, monkeypatch, capsys, run_cache):
    """A run whose encoder starts collapsed (all weights zero) warns in the log and marks metrics.csv."""
    from pretrain import config as C
    import modalities

    real_create = models.create

    def zero_create(name, **cfg):
        m = real_create(name, **cfg)
        with torch.no_grad():
            for p in m.parameters():
                p.zero_()
        return m

    monkeypatch.setattr(models, "create", zero_create)
    cfg = C.resolve(modalities.get("ecg").recipe, None,
                    ["model.dim=32", "model.depth=1", "model.num_heads=4", "data.window_s=2.0", "train.rankme_every=1",
                     "train.rankme_samples=16", "train.num_workers=0", "optim.warmup_steps=1"],
                    {"data": {"path": str(signals_dir)}, "train": {"max_steps": 2, "batch_size": 4}})
    loop.train(cfg, tmp_path / "run", progress=False)
    assert "possible collapse (RankMe 1.00" in capsys.readouterr().out
    rows = loop.read_metrics(tmp_path / "run")
    assert rows[0]["collapse"] == 1 and rows[0]["rankme"] < 1.05


def test_probes_on_separable_and_random_data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    centers = rng.normal(size=(3, 8)) * 5
    z = centers[y] + rng.normal(size=(120, 8))
    tr, te = np.arange(120) % 2 == 0, np.arange(120) % 2 == 1
    assert knn_accuracy(z[tr], y[tr], z[te], y[te]) == 1.0
    assert linear_probe(z[tr], y[tr], z[te], y[te]) == 1.0
    noise = rng.normal(size=(120, 8))
    assert linear_probe(noise[tr], y[tr], noise[te], y[te]) < 0.7
    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5


def test_control_encoder_is_the_runs_own_initialisation(tmp_path, signals_dir, run_cache):
    """With a vanishing learning rate the exported encoder stays at its initial weights; the probes' control must
    equal it for the run's seed (here 3), and a control drawn with another seed must not."""
    from pretrain import config as C
    from pretrain.evaluate import control_encoder
    import modalities

    cfg = C.resolve(modalities.get("ecg").recipe, None,
                    ["model.dim=32", "model.depth=1", "model.num_heads=4", "data.window_s=2.0", "train.rankme_every=2",
                     "train.rankme_samples=8", "train.num_workers=0", "optim.warmup_steps=1", "optim.lr=1e-12",
                     "optim.min_lr=1e-12", "train.seed=3"],
                    {"data": {"path": str(signals_dir)}, "train": {"max_steps": 2, "batch_size": 4}})
    loop.train(cfg, tmp_path / "run", progress=False)
    trained = models.load_pretrained(tmp_path / "run" / "encoder").state_dict()
    own = control_encoder(tmp_path / "run").state_dict()
    other = control_encoder(tmp_path / "run", seed=0).state_dict()
    assert trained.keys() == own.keys()
    for k in trained:
        torch.testing.assert_close(own[k], trained[k], rtol=0, atol=1e-6)
    assert max((other[k] - trained[k]).abs().max().item() for k in trained) > 1e-3
