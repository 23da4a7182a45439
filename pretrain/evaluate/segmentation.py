"""Per-point probes of point-cloud encoders (LiDAR, 3D scenes): linear and k-NN probes of frozen per-point
features, all decoder levels concatenated against the last level only (the MSM protocol)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pretrain.evaluate.embedding import _nearest, _standardise
from pretrain.metrics import miou

__all__ = ["segmentation_probe"]


@torch.no_grad()
def _point_features(enc: nn.Module, scenes: list[dict[str, Any]], labels: list[Any], levels: str, budget: int,
                    ignore_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-point features of every scene, each scene subsampled to its share of ``budget`` labelled points."""
    feats, ys = [], []
    per_scene = max(1, budget // max(1, len(scenes)))
    for pts, y in zip(scenes, labels):
        y = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y).astype(np.int64)
        f = enc.point_features(pts, levels=levels)
        f = (f.detach().float().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, np.float32))
        if len(f) != len(y):
            raise ValueError(f"segmentation probe: {len(f)} point features for {len(y)} labels")
        idx = np.flatnonzero(y != ignore_index)
        if len(idx) > per_scene:
            idx = np.sort(rng.choice(idx, per_scene, replace=False))
        feats.append(f[idx])
        ys.append(y[idx])
    return np.concatenate(feats), np.concatenate(ys)


def segmentation_probe(encoders: dict[str, nn.Module], probe_name: str, ps: Any, levels: tuple[str, ...] = ("all", "last"),
                       max_train_points: int = 20000, max_test_points: int = 40000, k: int = 5,
                       seed: int = 0) -> list[dict[str, Any]]:
    """Per-point probes of frozen point features, the MSM protocol (Hermosilla et al. 2025): features of every
    decoder level interpolated to the points and concatenated (``levels="all"``) against the last level only.

    For each encoder and level choice: a logistic-regression probe (standardised features, trained on up to
    ``max_train_points`` labelled points sampled evenly across the training scenes) and a k-NN (cosine) vote,
    both scored by mIoU and overall accuracy on up to ``max_test_points`` test points.
    """
    from sklearn.linear_model import LogisticRegression

    ignore = int(ps.meta.get("ignore_index", -1))
    rows = []
    for enc_name, enc in encoders.items():
        enc.eval()
        for lv in levels:
            rng = np.random.default_rng(seed)
            f_tr, y_tr = _point_features(enc, list(ps.x_train), list(ps.y_train), lv, max_train_points, ignore, rng)
            f_te, y_te = _point_features(enc, list(ps.x_test), list(ps.y_test), lv, max_test_points, ignore, rng)
            f_tr, f_te = _standardise(f_tr, f_te)
            clf = LogisticRegression(max_iter=300, C=1.0)
            clf.fit(f_tr, y_tr)
            pred_lin = clf.predict(f_te)
            votes = y_tr[_nearest(f_tr, f_te, k)]
            pred_knn = np.array([np.bincount(v).argmax() for v in votes])
            rows.append({"probe": probe_name, "task": "segmentation", "encoder": enc_name, "levels": lv,
                         "dim": int(f_tr.shape[1]), "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
                         "classes": int(len(np.unique(y_te))),
                         "linear_miou": miou(y_te, pred_lin, ignore_index=ignore), "linear_acc": float((pred_lin == y_te).mean()),
                         "knn_miou": miou(y_te, pred_knn, ignore_index=ignore), "knn_acc": float((pred_knn == y_te).mean())})
    return rows
