"""RankMe, the collapse detector and the probes, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from modalities.base import ProbeSet
from pretrain import loop
from pretrain.config import ConfigError
from pretrain.evaluate import (balanced_accuracy, blocked_cv_scores, collapsed, embedding_std, knn_accuracy,
                               knn_predict, linear_probe, probe_encoders, rankme, set_knn_vote)


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


def small_class_beside_large():
    """60 items of class 0 around 0 and 6 of class 1 shifted by 1 in 3-D; a third of class 0 and half of class 1
    are test items (the boolean mask)."""
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(60, dtype=np.int64), np.ones(6, dtype=np.int64)]
    test = np.zeros(66, dtype=bool)
    test[np.r_[np.arange(0, 60, 3), np.arange(60, 66, 2)]] = True
    return rng.normal(size=(66, 3)) + y[:, None], y, test


def test_balanced_knn_vote_weighs_each_class_by_its_training_count():
    # 1-D embeddings of mean 0: after standardising, the cosine similarity of a positive test item is 1 to every
    # positive training item and -1 to the others, and equal neighbours keep the training order. The test item's
    # 3 nearest are items 0, 2, 3: labels [1, 0, 0]. Plain vote: 2 > 1 -> class 0. Balanced vote: class 0 has 6
    # training items and class 1 two, so 2/6 < 1/2 -> class 1.
    z_train = np.array([[5.0], [-5.0], [1.0], [2.0], [3.0], [-1.0], [-2.0], [-3.0]])
    y_train = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    z_test = np.array([[4.0]])
    assert knn_predict(z_train, y_train, z_test, k=3).tolist() == [0]
    assert knn_predict(z_train, y_train, z_test, k=3, vote="balanced").tolist() == [1]
    # equal class sizes: both votes agree everywhere
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(40, 4)), np.tile([0, 1], 20)
    assert np.array_equal(knn_predict(z[:30], y[:30], z[30:]), knn_predict(z[:30], y[:30], z[30:], vote="balanced"))
    # a small class overlapping a large one: the plain 5-vote never returns it, the balanced vote does
    z, y, test = small_class_beside_large()
    train = ~test
    plain = knn_accuracy(z[train], y[train], z[test], y[test])
    balanced = knn_accuracy(z[train], y[train], z[test], y[test], vote="balanced")
    assert plain == 0.5 and balanced > 0.9
    assert blocked_cv_scores(z, y, np.arange(66) % 3, vote="balanced")["knn_bacc"] > \
        blocked_cv_scores(z, y, np.arange(66) % 3)["knn_bacc"]
    with pytest.raises(ValueError, match="knn vote: use one of plain, balanced, got 'equal'"):
        knn_predict(z_train, y_train, z_test, vote="equal")


def test_probes_vote_balanced_unless_told_plain():
    # probe_encoders' kNN is the balanced vote (KNN_VOTE); data.probe_knn_vote=plain (set_knn_vote) gives the
    # majority vote on every classification probe set. On a small class beside a large one, only the balanced
    # vote ever returns the small class.
    z, y, test = small_class_beside_large()
    probes = {"small_class": ProbeSet(z[~test], y[~test], z[test], y[test]),
              "level": ProbeSet(z[:, :2], z[:, 2], z[:, :2], z[:, 2], task="regression")}
    encoder = torch.nn.Identity()
    encoder.embed = lambda x: x
    balanced = probe_encoders({"identity": encoder}, probes)[0]
    set_knn_vote(probes, None)
    assert probes["small_class"].meta == {}
    set_knn_vote(probes, "plain")
    assert probes["small_class"].meta["knn_vote"] == "plain" and "knn_vote" not in probes["level"].meta
    plain = probe_encoders({"identity": encoder}, {"small_class": probes["small_class"]})[0]
    assert (plain["knn_vote"], balanced["knn_vote"]) == ("plain", "balanced")
    assert plain["knn_bacc"] == 0.5 and balanced["knn_bacc"] > 0.9
    assert balanced["linear_bacc"] == plain["linear_bacc"]
    with pytest.raises(ConfigError, match="data.probe_knn_vote: use one of plain, balanced, got 'weighted'"):
        set_knn_vote(probes, "weighted")


def test_probe_set_can_ask_for_its_own_k():
    # the 1-D case above: the test item's nearest training item is item 0 (class 1); its 5 nearest are items
    # 0, 2, 3, 4 and 1, labels [1, 0, 0, 0, 1]: the plain 5-vote says class 0, the nearest alone class 1
    z_train = np.array([[5.0], [-5.0], [1.0], [2.0], [3.0], [-1.0], [-2.0], [-3.0]])
    y_train = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    encoder = torch.nn.Identity()
    encoder.embed = lambda x: x
    ps = ProbeSet(z_train, y_train, np.array([[4.0]]), np.array([1]), meta={"knn_vote": "plain"})
    five = probe_encoders({"identity": encoder}, {"p": ps})[0]
    ps.meta["knn_k"] = 1
    one = probe_encoders({"identity": encoder}, {"p": ps})[0]
    assert (five["knn_k"], five["knn_bacc"]) == (5, 0.0) and (one["knn_k"], one["knn_bacc"]) == (1, 1.0)
    # cross-validated probe sets pass it on too
    z, y, _ = small_class_beside_large()
    folds = np.arange(66) % 3
    row = probe_encoders({"identity": encoder}, {"p": ProbeSet.folded(z, y, folds, meta={"knn_k": 1})})[0]
    assert row["knn_k"] == 1
    assert row["knn_bacc"] == blocked_cv_scores(z, y, folds, k=1, vote="balanced")["knn_bacc"]
    assert row["knn_bacc"] != blocked_cv_scores(z, y, folds, k=5, vote="balanced")["knn_bacc"]


def test_blocked_cross_validation_predicts_every_item_from_the_other_blocks():
    # 1-D embeddings: after standardising with the other block's statistics, cosine similarity is the sign of
    # (z - mean of the training block), and 1-NN takes the label of that sign's training items (each sign group of
    # a block below holds one label). Block 0 = z [-1, 0, 4], labels [0, 0, 1], mean 1; block 1 = z [-5, 0.5, 3],
    # labels [0, 1, 1], mean -0.5. Block 0 vs block 1's mean: signs [-, +, +] -> predictions [0, 1, 1]; block 1 vs
    # block 0's mean: [-, -, +] -> [0, 0, 1]. Out of fold [0, 1, 1, 0, 0, 1] vs [0, 0, 1, 0, 1, 1]: recalls 2/3, 2/3.
    z = np.array([[-1.0], [0.0], [4.0], [-5.0], [0.5], [3.0]])
    y = np.array([0, 0, 1, 0, 1, 1])
    folds = np.array([0, 0, 0, 1, 1, 1])
    assert blocked_cv_scores(z, y, folds, k=1)["knn_bacc"] == pytest.approx(2 / 3)
    # separable clusters: every held-out block is predicted right by both probes
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 30)
    emb = np.where(labels[:, None] == 1, 4.0, -4.0) + rng.normal(size=(60, 5))
    blocks = np.repeat(np.arange(6), 10)
    assert blocked_cv_scores(emb, labels, blocks) == {"knn_bacc": 1.0, "linear_bacc": 1.0}
    # labels unrelated to the embeddings: near chance
    scores = blocked_cv_scores(rng.normal(size=(60, 5)), labels, blocks)
    assert scores["knn_bacc"] < 0.75 and scores["linear_bacc"] < 0.75
    with pytest.raises(ValueError, match="at least 2 folds"):
        blocked_cv_scores(emb, labels, np.zeros(60))
    with pytest.raises(ValueError, match="outside fold 0 hold a single class"):
        blocked_cv_scores(emb[:4], np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))


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
