"""Scores shared by the probes, the fine-tuning report and the training monitors: one definition each.

- regression: :func:`r2_score` (a constant target gives 1.0 for an exact prediction, else -inf), MAE, RMSE;
- classification: :func:`balanced_accuracy` (mean recall over the classes present), macro AUROC / F1, accuracy;
- images: :func:`psnr`, :func:`windowed_psnr` (per image, both clipped to a window), :func:`ssim`;
- point labels: :func:`miou`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["balanced_accuracy", "classification_metrics", "miou", "psnr", "r2_score", "regression_metrics", "score",
           "ssim", "windowed_psnr"]


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - sum (y - p)^2 / sum (y - mean y)^2`` (0 for predicting the test mean,
    negative when worse; a constant ``y_true`` gives 1.0 for an exact prediction, else -inf)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    ss_res = float(((y_true - y_pred) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else float("-inf")
    return 1.0 - ss_res / ss_tot


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over classes present in ``y_true`` of the per-class recall."""
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio 10 log10(R^2 / MSE(x, ref)) in dB, R = ``data_range``.

    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1), 1.0), 6)
    20.0
    """
    mse = float(np.mean((_array(x) - _array(ref)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Structural similarity of two 2-D images (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03,
    population covariances), through scikit-image."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(x, np.float64), np.asarray(ref, np.float64), data_range=data_range,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def miou(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None, ignore_index: int = -1) -> float:
    """Mean intersection over union over the classes present in ``y_true`` (points labelled ``ignore_index`` are
    left out); a class predicted but absent from ``y_true`` only lowers the IoU of the classes it steals from.

    >>> miou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    0.5833333333333333
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    keep = y_true != ignore_index
    y_true, y_pred = y_true[keep], y_pred[keep]
    ious = []
    for c in np.unique(y_true):
        inter = np.sum((y_true == c) & (y_pred == c))
        union = np.sum((y_true == c) | (y_pred == c))
        ious.append(inter / union)
    return float(np.mean(ious)) if ious else float("nan")


def _array(x: Any) -> np.ndarray:
    """float64 NumPy copy of an array or a (CPU or GPU) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().double().cpu().numpy()
    return np.asarray(x, np.float64)


def windowed_psnr(a: np.ndarray, b: np.ndarray, window: tuple[float, float]) -> float:
    """Mean over images of :func:`psnr` between ``a`` and ``b`` float[B, ...] (data units), both clipped to
    ``window``, with data range ``window[1] - window[0]`` (MSE floored at 1e-12)."""
    lo, hi = float(window[0]), float(window[1])
    a, b = _array(a), _array(b)
    a, b = np.clip(a, lo, hi).reshape(len(a), -1), np.clip(b, lo, hi).reshape(len(b), -1)
    mse = np.maximum(((a - b) ** 2).mean(1), 1e-12)
    return float(np.mean(10.0 * np.log10((hi - lo) ** 2 / mse)))


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R^2 (:func:`r2_score`) over the finite targets (averaged over target columns)."""
    y, p = np.asarray(y, np.float64).reshape(len(y), -1), np.asarray(p, np.float64).reshape(len(p), -1)
    out = {"rmse": [], "mae": [], "r2": []}
    for j in range(y.shape[1]):
        k = np.isfinite(y[:, j])
        err = p[k, j] - y[k, j]
        out["rmse"].append(math.sqrt(float(np.mean(err ** 2))))
        out["mae"].append(float(np.mean(np.abs(err))))
        out["r2"].append(r2_score(y[k, j], p[k, j]))
    return {k: float(np.mean(v)) for k, v in out.items()}


def classification_metrics(y: np.ndarray, logits: np.ndarray, task: str) -> dict[str, float]:
    """Macro AUROC (over labels / one-vs-rest classes present in ``y``), accuracy and macro F1; multiclass also
    balanced accuracy (mean per-class recall over the classes present in ``y``)."""
    from sklearn.metrics import f1_score, roc_auc_score

    logits = np.asarray(logits, np.float64)
    if task == "multiclass":
        y = np.asarray(y).reshape(-1).astype(int)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        pred = prob.argmax(1)
        present = np.unique(y)
        aucs = [roc_auc_score(y == c, prob[:, c]) for c in present if 0 < np.sum(y == c) < len(y)]
        return {"accuracy": float(np.mean(pred == y)), "f1": float(f1_score(y, pred, average="macro")),
                "balanced_accuracy": balanced_accuracy(y, pred),
                "auroc": float(np.mean(aucs)) if aucs else float("nan")}
    y = np.asarray(y, np.float64).reshape(len(logits), -1)
    prob = 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)))
    aucs, f1s, accs = [], [], []
    for j in range(y.shape[1]):
        k = np.isfinite(y[:, j])
        t, s = y[k, j].astype(int), prob[k, j]
        if 0 < t.sum() < len(t):
            aucs.append(roc_auc_score(t, s))
        f1s.append(f1_score(t, s >= 0.5, zero_division=0))
        accs.append(float(np.mean((s >= 0.5) == t)))
    return {"auroc": float(np.mean(aucs)) if aucs else float("nan"), "f1": float(np.mean(f1s)),
            "accuracy": float(np.mean(accs))}


def score(task: str, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
    if task == "segmentation":
        y, pred = np.asarray(y).reshape(-1).astype(int), np.asarray(out).argmax(1)
        known = y >= 0
        return {"miou": miou(y, pred), "accuracy": float(np.mean(pred[known] == y[known]))}
    return regression_metrics(y, out) if task == "regression" else classification_metrics(y, out, task)
