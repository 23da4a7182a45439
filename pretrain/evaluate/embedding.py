"""Probes of frozen embeddings: k-NN (cosine) and logistic regression for classes, k-NN mean and ridge regression
for continuous targets, on a fixed split or cross-validated over contiguous blocks (``ProbeSet.folds``)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from pretrain.metrics import balanced_accuracy, r2_score

__all__ = ["KNN_K", "KNN_VOTE", "KNN_VOTES", "RIDGE_ALPHAS", "blocked_cv_predictions", "blocked_cv_scores",
           "embed_array", "knn_accuracy", "knn_predict", "knn_regression", "linear_predict", "linear_probe",
           "ridge_probe", "within_group_r"]


@torch.no_grad()
def embed_array(embed: Callable[[Any], torch.Tensor], x: Any, batch_size: int = 64,
                collate: Callable[[list[Any]], Any] | None = None) -> np.ndarray:
    """Embed inputs in batches with ``embed`` -> float64[N, D].

    ``x`` is an array float[N, ...] (signals, images), or, with ``collate``, a sequence of samples (e.g. graphs)
    that ``collate`` turns into one model input per batch."""
    if collate is not None:
        items = list(x)
        out = [embed(collate(items[i:i + batch_size])).double().cpu() for i in range(0, len(items), batch_size)]
    else:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        out = [embed(xt[i:i + batch_size]).double().cpu() for i in range(0, len(xt), batch_size)]
    return torch.cat(out).numpy()


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-8
    return (train - mu) / sd, (test - mu) / sd


def _nearest(z_train: np.ndarray, z_test: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """int[N_test, k] indices of each test embedding's ``k`` nearest training embeddings: cosine similarity on
    embeddings standardised with the training statistics. Test rows are processed in chunks; up to 4096 training
    items the order is exact (float64, ties broken by training order), beyond (per-point probes over tens of
    thousands of points) a float32 top-k keeps time and memory small."""
    a, b = _standardise(z_train, z_test)
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    k = min(k, len(a))
    out = np.empty((len(b), k), dtype=np.int64)
    big = len(a) > 4096  # per-point probes: float32 and a partial top-k; small probes: exact stable order
    at = torch.from_numpy(a.astype(np.float32 if big else np.float64))
    for i in range(0, len(b), chunk):
        sim = torch.from_numpy(b[i:i + chunk].astype(np.float32 if big else np.float64)) @ at.T
        if big:
            out[i:i + chunk] = torch.topk(sim, k, dim=1).indices.numpy()
        else:
            out[i:i + chunk] = np.argsort(-sim.numpy(), axis=1, kind="stable")[:, :k]
    return out


KNN_VOTES = ("plain", "balanced")


KNN_VOTE = "balanced"  # the embedding probes' vote unless a probe set's meta["knn_vote"] says otherwise


KNN_K = 5  # the embedding probes' neighbours unless a probe set's meta["knn_k"] says otherwise


def knn_predict(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, k: int = 5,
                vote: str = "plain") -> np.ndarray:
    """Class of each test embedding by a vote among its ``k`` nearest training embeddings (cosine; ties go to the
    lowest class index). ``vote="plain"``: one vote per neighbour (majority). ``vote="balanced"`` (what
    :func:`probe_encoders` uses, :data:`KNN_VOTE`): a neighbour of class c votes 1 / n_c, n_c the training items of
    class c, so every class's training set weighs the same in total: the kNN counterpart of the balanced accuracy
    the probes report.
    Probe classes differ in size by nature (MIT-BIH beats N 300 vs A 22) or by recording length (a 15 s sleep
    recording beside 8-minute ones), and a plain 5-vote almost never returned those small classes. The flaw of the
    balanced vote: once a class is more than k - 1 times smaller than another, one neighbour of it outvotes all the
    others. Probe sets where that decides the score ask for the single nearest item (``meta["knn_k"] = 1``, ECG
    record identity), where no vote is taken."""
    if vote not in KNN_VOTES:
        raise ValueError(f"knn vote: use one of {', '.join(KNN_VOTES)}, got {vote!r}")
    n_classes = int(y_train.max()) + 1
    weight = np.ones(n_classes)
    if vote == "balanced":
        weight = 1.0 / np.maximum(np.bincount(y_train, minlength=n_classes), 1)
    votes = y_train[_nearest(z_train, z_test, k)]
    return np.array([(np.bincount(v, minlength=n_classes) * weight).argmax() for v in votes])


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int = 5,
                 vote: str = "plain") -> float:
    """Balanced accuracy of :func:`knn_predict`."""
    return balanced_accuracy(y_test, knn_predict(z_train, y_train, z_test, k, vote))


def linear_predict(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, c: float = 1.0,
                   seed: int = 0) -> np.ndarray:
    """Class of each test embedding by an L2-regularised logistic regression on standardised frozen embeddings."""
    from sklearn.linear_model import LogisticRegression

    a, b = _standardise(z_train, z_test)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(a, y_train)
    return clf.predict(b)


def linear_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, c: float = 1.0,
                 seed: int = 0) -> float:
    """Balanced accuracy of :func:`linear_predict`."""
    return balanced_accuracy(y_test, linear_predict(z_train, y_train, z_test, c, seed))


def blocked_cv_predictions(z: np.ndarray, y: np.ndarray, folds: np.ndarray, k: int = 5,
                           vote: str = "plain") -> dict[str, np.ndarray]:
    """``{"knn", "linear"}``: out-of-fold class predictions, each fold (``folds[i]``, a contiguous block in time of
    the recording) predicted by :func:`knn_predict` / :func:`linear_predict` fit on all the other folds
    (standardised with their statistics)."""
    z, y, folds = np.asarray(z), np.asarray(y), np.asarray(folds)
    if not (len(z) == len(y) == len(folds)):
        raise ValueError(f"blocked_cv_scores: {len(z)} embeddings, {len(y)} labels and {len(folds)} fold ids")
    blocks = np.unique(folds)
    if len(blocks) < 2:
        raise ValueError(f"blocked_cv_scores: needs at least 2 folds, got {len(blocks)}")
    pred = {"knn": np.empty_like(y), "linear": np.empty_like(y)}
    for b in blocks:
        test, train = folds == b, folds != b
        if len(np.unique(y[train])) < 2:
            raise ValueError(f"blocked_cv_scores: the items outside fold {b} hold a single class")
        pred["knn"][test] = knn_predict(z[train], y[train], z[test], k, vote)
        pred["linear"][test] = linear_predict(z[train], y[train], z[test])
    return pred


def blocked_cv_scores(z: np.ndarray, y: np.ndarray, folds: np.ndarray, k: int = 5,
                      vote: str = "plain") -> dict[str, float]:
    """``{"knn_bacc", "linear_bacc"}``: balanced accuracy of :func:`blocked_cv_predictions`. Every item is
    predicted exactly once, so a probe of N items is scored on N predictions instead of the third of them a
    held-out split would leave."""
    y = np.asarray(y)
    pred = blocked_cv_predictions(z, y, folds, k, vote)
    return {"knn_bacc": balanced_accuracy(y, pred["knn"]), "linear_bacc": balanced_accuracy(y, pred["linear"])}


def _regression_scores(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    scores = {"r2": r2_score(y_true, y_pred), "mae": float(np.abs(y_true - y_pred).mean())}
    if groups is not None:
        scores["within_r"] = within_group_r(y_true, y_pred, groups)
    return scores


def knn_regression(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                   k: int = 5, groups: np.ndarray | None = None) -> dict[str, float]:
    """``{"r2", "mae"}`` of predicting each test target as the mean target of its ``k`` nearest training
    embeddings (cosine on standardised embeddings, as :func:`knn_accuracy`); plus ``"within_r"``
    (:func:`within_group_r`) when ``groups`` (one id per test item) is given."""
    pred = np.asarray(y_train, dtype=np.float64)[_nearest(z_train, z_test, k)].mean(axis=1)
    return _regression_scores(y_test, pred, groups)


RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def ridge_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                alpha: float | None = None, groups: np.ndarray | None = None) -> dict[str, float]:
    """``{"r2", "mae"}`` of ridge regression ``min_w,b ||A w + b - y||^2 + alpha ||w||^2`` on standardised
    frozen embeddings ``A`` (the intercept is not penalised). ``alpha=None`` picks it from :data:`RIDGE_ALPHAS` by
    leave-one-out error on the training set only (a fixed alpha over-fits 256-d embeddings of a few hundred
    windows). ``groups``: as :func:`knn_regression`."""
    from sklearn.linear_model import Ridge, RidgeCV

    a, b = _standardise(z_train, z_test)
    y = np.asarray(y_train, dtype=np.float64)
    reg = Ridge(alpha=alpha) if alpha is not None else RidgeCV(alphas=RIDGE_ALPHAS)
    reg.fit(a, y)
    return _regression_scores(y_test, reg.predict(b), groups)


def within_group_r(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, min_items: int = 10,
                   min_std: float = 2.0) -> float:
    """Mean over groups (recordings) of the Pearson correlation between predictions and targets inside the group,
    over groups with at least ``min_items`` test items whose targets vary (std >= ``min_std``); NaN when no group
    qualifies. It asks whether predictions *track* the target within one recording, which R^2 over all items
    cannot tell when the recordings' means differ more than the target varies inside them (a probe that only
    recognises the recording scores a high R^2 and a within-recording r near 0)."""
    y_true, y_pred, groups = (np.asarray(a, dtype=np.float64) for a in (y_true, y_pred, groups))
    rs = []
    for g in np.unique(groups):
        t, p = y_true[groups == g], y_pred[groups == g]
        if len(t) >= min_items and t.std() >= min_std:
            rs.append(0.0 if p.std() == 0 else float(np.corrcoef(t, p)[0, 1]))
    return float(np.mean(rs)) if rs else float("nan")
