"""Regression probes (R^2, MAE; kNN mean and ridge) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modalities.base import ProbeSet
from pretrain.evaluate import knn_regression, probe_encoders, r2_score, ridge_probe


def test_r2_hand_cases():
    y = np.array([1.0, 2.0, 3.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(3, 2.0)) == 0.0  # the test mean
    assert r2_score(y, y[::-1]) == pytest.approx(1 - 8 / 2)  # residuals 4 + 0 + 4, total 1 + 0 + 1
    assert r2_score(np.ones(3), np.ones(3)) == 1.0 and r2_score(np.ones(3), np.zeros(3)) == float("-inf")


def test_knn_regression_hand_case():
    # Train points on the four axis directions (standardising only rescales them), targets 10..40.
    z_train = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y_train = np.array([10.0, 20.0, 30.0, 40.0])
    z_test = np.array([[2.0, 0.1], [-0.1, -3.0]])
    y_test = np.array([12.0, 36.0])
    # k = 2: the first test point's neighbours are +x then +y (mean 15), the second's -y then -x (mean 35).
    out = knn_regression(z_train, y_train, z_test, y_test, k=2)
    assert out["mae"] == pytest.approx((3 + 1) / 2)
    assert out["r2"] == pytest.approx(1 - (9 + 1) / (144 + 144))
    out1 = knn_regression(z_train, y_train, z_test, y_test, k=1)  # predictions 10 and 40
    assert out1["mae"] == pytest.approx((2 + 4) / 2)


def test_ridge_hand_case():
    # Standardised train inputs -1, +1 and targets 0, 4: w = sum a (y - 2) / (sum a^2 + alpha) = 4 / 3, b = 2.
    z_train, y_train = np.array([[-1.0], [1.0]]), np.array([0.0, 4.0])
    z_test, y_test = np.array([[3.0], [0.0]]), np.array([5.0, 2.0])  # predictions 2 + 3 * 4/3 = 6 and 2
    out = ridge_probe(z_train, y_train, z_test, y_test, alpha=1.0)
    assert out["mae"] == pytest.approx(0.5)
    assert out["r2"] == pytest.approx(1 - 1 / 4.5)


def test_ridge_alpha_is_chosen_on_the_training_set_only():
    """With alpha=None the penalty comes from leave-one-out on the training rows; with 40 features and 40 rows
    the chosen penalty beats a near-zero one on held-out rows."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60, 40))
    y = z[:, 0] + 0.5 * rng.standard_normal(60)
    a = ridge_probe(z[:40], y[:40], z[40:], y[40:])
    assert a["r2"] > ridge_probe(z[:40], y[:40], z[40:], y[40:], alpha=1e-6)["r2"]


class _Linear(nn.Module):
    embed_dim = 3

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3]


def test_probe_encoders_regression_rows():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 1, 3)).astype(np.float32)
    y = x[:, 0] @ np.array([2.0, -1.0, 0.5]) + 60.0  # exactly linear in the embedding
    ps = ProbeSet(x[:80], y[:80], x[80:], y[80:], task="regression")
    cls = ProbeSet(x[:80], (y[:80] > 60).astype(np.int64), x[80:], (y[80:] > 60).astype(np.int64))
    rows = probe_encoders({"linear": _Linear()}, {"hr": ps, "high": cls})
    reg = next(r for r in rows if r["probe"] == "hr")
    assert reg["task"] == "regression" and (reg["n_train"], reg["n_test"]) == (80, 40)
    assert reg["ridge_r2"] > 0.99 and reg["ridge_mae"] < 0.2
    assert 0.5 < reg["knn_r2"] < 1.0 and reg["target_std"] == pytest.approx(np.std(y[80:]))
    clf = next(r for r in rows if r["probe"] == "high")
    assert clf["task"] == "classification" and clf["classes"] == 2 and "knn_bacc" in clf
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        probe_encoders({"linear": _Linear()}, {"bad": ProbeSet(x, y, x, y, task="ranking")})


def test_probe_encoders_cross_validate_a_probe_set_with_folds():
    """A ProbeSet with ``folds`` is scored on out-of-fold predictions of all its items (the numbers of
    blocked_cv_scores on the embeddings), not on a held-out part; a regression probe cannot be folded."""
    from pretrain.evaluate import blocked_cv_scores

    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 1, 3)).astype(np.float32)
    y = (x[:, 0, 0] + 0.5 * x[:, 0, 1] > 0).astype(np.int64)
    folds = np.repeat(np.arange(4), 15)
    empty = np.zeros((0, 1, 3), dtype=np.float32)
    ps = ProbeSet(x, y, empty, np.zeros(0, dtype=np.int64), folds=folds)
    (row,) = probe_encoders({"linear": _Linear()}, {"cv": ps})
    assert (row["n_train"], row["n_test"], row["folds"], row["classes"]) == (60, 60, 4, 2)
    expected = blocked_cv_scores(x[:, 0, :3].astype(np.float64), y, folds)
    assert (row["knn_bacc"], row["linear_bacc"]) == (expected["knn_bacc"], expected["linear_bacc"])
    assert row["linear_bacc"] > 0.85  # linearly separable up to the held-out blocks' margin
    with pytest.raises(ValueError, match="blocked cross-validation needs a classification task"):
        probe_encoders({"linear": _Linear()}, {"cv": ProbeSet(x, y.astype(float), empty, y[:0], task="regression",
                                                              folds=folds)})


def test_within_group_correlation_separates_tracking_from_recognising():
    from pretrain.evaluate import within_group_r

    # group 0: targets 60..69 around a mean of 64.5; group 1: targets 120..129
    y = np.concatenate([60 + np.arange(10.0), 120 + np.arange(10.0)])
    groups = np.repeat([0, 1], 10)
    recognise = np.repeat([64.5, 124.5], 10)  # knows the group, not the target inside it
    assert r2_score(y, recognise) > 0.95 and within_group_r(y, recognise, groups, min_std=1.0) == 0.0
    track = y + np.tile([1.0, -1.0], 10)  # follows the target inside each group
    # Pearson r of t and t + e with e = +-1 alternating: cov = var(t) + cov(t, e) = 8.25 - 0.5, var(t + e) = 8.25
    # + 1 + 2 cov(t, e) = 8.25; r = 7.75 / sqrt(8.25 * 8.25)
    assert within_group_r(y, track, groups, min_std=1.0) == pytest.approx(7.75 / 8.25)
    # groups with fewer items or a smaller target std (here 2.87) than asked for are left out; none left -> NaN
    assert np.isnan(within_group_r(y, track, groups, min_items=11))
    assert np.isnan(within_group_r(y, track, groups, min_std=3.0))
    # one group qualifying (the other's targets made constant) -> that group's r
    flat = np.where(groups == 1, 120.0, y)
    assert within_group_r(flat, track, groups, min_std=1.0) == pytest.approx(7.75 / 8.25)


class _TwoChannel(nn.Module):
    """Channel-independent toy encoder: each channel's feature is its mean; ``embed`` averages the channels."""

    def embed_channels(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(-1, keepdim=True)  # [B, C, 1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_channels(x).mean(1)  # [B, 1]


def test_probe_reads_per_channel_features_when_the_probe_set_asks():
    """Class = which of two channels carries the offset (lateralisation): the channel mean is identical for both
    classes, the per-channel features separate them."""
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    x = 0.1 * rng.standard_normal((60, 2, 16)).astype(np.float32)
    x[np.arange(60), y] += 1.0  # +1 on channel 0 for class 0, on channel 1 for class 1
    x = x - x.mean(axis=(1, 2), keepdims=True)  # the mean over channels and time carries nothing
    folds = np.repeat(np.arange(3), 20)
    empty = np.zeros((0, 2, 16), dtype=np.float32)
    sets = {name: ProbeSet(x, y, empty, y[:0], folds=folds, meta=meta)
            for name, meta in (("mean", {}), ("channels", {"embedding": "channels"}))}
    rows = {r["probe"]: r for r in probe_encoders({"toy": _TwoChannel()}, sets)}
    assert rows["channels"]["embedding"] == "channels" and rows["mean"]["embedding"] == "mean"
    assert rows["channels"]["linear_bacc"] == 1.0 and rows["channels"]["knn_bacc"] == 1.0
    assert rows["mean"]["linear_bacc"] < 0.7
    # an encoder without per-channel features falls back to embed
    (row,) = probe_encoders({"linear": _Linear()}, {"c": ProbeSet(x[:, :1, :3], y, empty[:, :1, :3], y[:0],
                                                                     folds=folds, meta={"embedding": "channels"})})
    assert row["embedding"] == "mean"
