"""Label-free monitors and labelled probes of frozen encoders, and the run report.

- :func:`rankme`: effective rank of an embedding matrix (Garrido et al. 2023), a label-free quality monitor.
- :func:`knn_accuracy` / :func:`linear_probe`: a fixed-split k-NN (cosine) and a logistic-regression probe;
  :func:`blocked_cv_scores` (:func:`blocked_cv_predictions`): the same two, cross-validated over contiguous
  blocks (probe sets too small for a held-out split, ``ProbeSet.folds``).
- :func:`knn_regression` / :func:`ridge_probe`: the same for continuous targets (heart rate): k-NN mean and ridge
  regression, scored by R^2 and mean absolute error.
- :func:`psnr` / :func:`ssim` / :func:`region_std` / :func:`enl` / :func:`ratio_image_stats` and
  :func:`denoising_probe`: denoisers (CT, SAR) scored against clean references or, without one, by noise level,
  ENL and the ratio image.
- :func:`miou` and :func:`segmentation_probe`: per-point linear and k-NN probes of point features, all decoder
  levels against the last one (the MSM protocol).
- :func:`evaluate_run`: embeds each probe set with the run's pretrained encoder and with a randomly initialised
  encoder of the same architecture, and writes ``report.md`` with figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pretrain.config import ConfigError


def rankme(z: torch.Tensor, eps: float = 1e-5) -> float:
    """RankMe = exp(-sum_k p_k log p_k) with p_k = s_k / ||s||_1 + eps, s the singular values of z float[N, K].

    A collapsed (constant) embedding gives ~1; an isotropic one gives ~min(N, K).

    >>> round(rankme(torch.eye(8)), 3)
    7.999
    """
    s = torch.linalg.svdvals(z.detach().double())
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings (collapse -> 0,
    healthy -> about 1/sqrt(K)); the collapse detector of SimSiam."""
    zn = torch.nn.functional.normalize(z.detach().double(), dim=1)
    return float(zn.std(dim=0).mean())


def collapsed(rank: float, best_rank: float, floor: float = 1.1, drop: float = 0.25) -> bool:
    """The collapse warning: RankMe near 1 (below ``floor``; a constant encoder gives exactly 1) or fallen below
    ``drop`` x its best value so far. Mean-pooled transformer features share one dominant direction, so a healthy
    encoder can sit at RankMe ~1.4 on raw (uncentred) embeddings: the floor is kept close to 1."""
    return rank < max(floor, drop * best_rank)


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


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - sum (y - p)^2 / sum (y - mean y)^2`` (0 for predicting the test mean,
    negative when worse; a constant ``y_true`` gives 1.0 for an exact prediction, else -inf)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    ss_res = float(((y_true - y_pred) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else float("-inf")
    return 1.0 - ss_res / ss_tot


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


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over classes present in ``y_true`` of the per-class recall."""
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


# ------------------------------------------------------------------------------------------------ denoisers

def psnr(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio 10 log10(R^2 / MSE(x, ref)) in dB, R = ``data_range``.

    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1), 1.0), 6)
    20.0
    """
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Structural similarity of two 2-D images (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03,
    population covariances), through scikit-image."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(x, np.float64), np.asarray(ref, np.float64), data_range=data_range,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


Box = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open


def region_std(img: np.ndarray, box: Box) -> float:
    """Standard deviation of ``img`` inside ``box``: the noise level where the true image is uniform."""
    r0, r1, c0, c1 = box
    return float(np.std(np.asarray(img, np.float64)[r0:r1, c0:c1]))


def enl(intensity: np.ndarray, box: Box) -> float:
    """Equivalent number of looks mean^2 / var of an intensity image over a homogeneous ``box`` (1 for
    single-look fully developed speckle; higher is smoother). The probe chooses the boxes (48 x 48 where they fit,
    smaller in small scenes: ``modalities.sar.probes.homogeneous_boxes``); :func:`enl_box_size` names their size."""
    r0, r1, c0, c1 = box
    v = np.asarray(intensity, np.float64)[r0:r1, c0:c1]
    return float(v.mean() ** 2 / max(v.var(), 1e-30))


def enl_box_size(boxes: list[Box]) -> str:
    """The size of the ENL boxes, ``"48x48"`` (sizes that differ are listed, largest first)."""
    sizes = sorted({(int(b[1] - b[0]), int(b[3] - b[2])) for b in boxes}, reverse=True)
    return ", ".join(f"{h}x{w}" for h, w in sizes)


def ratio_image_stats(noisy_intensity: np.ndarray, denoised_intensity: np.ndarray) -> dict[str, float]:
    """Mean and variance of the ratio image noisy / denoised intensity. A despeckler that removes only speckle
    leaves a ratio of pure single-look speckle: mean 1 (radiometry kept) and variance 1 (exponential law);
    structure visible in the ratio image is signal the filter removed."""
    noisy = np.asarray(noisy_intensity, np.float64)
    valid = noisy > 0  # exact zeros are no-data fill (scene borders), not speckle
    r = noisy[valid] / np.maximum(np.asarray(denoised_intensity, np.float64)[valid], 1e-30)
    return {"ratio_mean": float(r.mean()), "ratio_var": float(r.var())}


def _as_image(x: Any) -> np.ndarray:
    """A model output or input as float64[H, W] (a leading channel axis of 1 is dropped)."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"denoising probe: expected a 2-D image (or [1, H, W]), got shape {a.shape}")
    return a.astype(np.float64)


def denoising_scores(out: np.ndarray, clean: Any, meta: dict[str, Any], noisy_display: np.ndarray, index: int,
                     ratio: bool = True) -> dict[str, float]:
    """PSNR/SSIM against ``clean`` (when given) after clipping to ``meta["window"]``, std (or ENL) in the image's
    ``meta["uniform_regions"]`` boxes and, for speckle, the ratio-image statistics against the noisy input."""
    scores: dict[str, float] = {}
    window = meta.get("window")
    if clean is not None:
        ref = _as_image(clean)
        a, b = out, ref
        rng = float(meta.get("data_range", 0.0))
        if window is not None:
            lo, hi = window
            a, b, rng = np.clip(a, lo, hi), np.clip(b, lo, hi), float(hi - lo)
        if not rng:
            rng = float(ref.max() - ref.min())
        scores["psnr"] = psnr(a, b, rng)
        scores["ssim"] = ssim(a, b, rng)
    boxes = (meta.get("uniform_regions") or [])
    boxes = boxes[index] if index < len(boxes) else []
    if meta.get("speckle"):
        if boxes:
            scores["enl"] = float(np.mean([enl(out ** 2, b) for b in boxes]))
            scores["enl_box"] = enl_box_size(boxes)  # type: ignore[assignment]
        if ratio:  # the noisy input against itself would be 1 / 0 by construction
            scores.update(ratio_image_stats(noisy_display ** 2, out ** 2))
    elif boxes:
        scores["region_std"] = float(np.mean([region_std(out, b) for b in boxes]))
    return scores


@torch.no_grad()
def denoising_probe(encoders: dict[str, nn.Module], probe_name: str, ps: Any, fig_dir: Path | None = None,
                    max_figures: int = 3) -> list[dict[str, Any]]:
    """Run every denoiser (``encoder.denoise(x)``) and the modality's classical baselines
    (``meta["baselines"]``: name -> callable) on each noisy input of a ``task="denoising"`` probe set; score
    them and the noisy input itself with :func:`denoising_scores`. One row per (method, image) with the seconds it
    took; with ``fig_dir``, a picture per image (noisy | each method | clean, the ratio image for speckle, and the
    trained model's ``explain(x)`` maps such as bilateral sigmas)."""
    import time

    meta = dict(ps.meta)
    to_display = meta.get("to_display") or (lambda x: x)
    names = meta.get("names") or [f"image {i}" for i in range(len(ps.x_test))]
    methods: dict[str, Callable[[Any], Any]] = {}
    for enc_name, enc in encoders.items():
        enc.eval()
        methods[enc_name] = enc.denoise
    methods.update(meta.get("baselines") or {})
    rows = []
    for i, x in enumerate(ps.x_test):
        clean = ps.y_test[i] if ps.y_test is not None and i < len(ps.y_test) else None
        noisy = _as_image(to_display(x))
        outputs = {"noisy input": noisy}
        rows.append({"probe": probe_name, "task": "denoising", "method": "noisy input", "image": names[i],
                     "seconds": 0.0, **denoising_scores(noisy, clean, meta, noisy, i, ratio=False)})
        for m_name, fn in methods.items():
            tic = time.perf_counter()
            out = _as_image(fn(torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x))
            dt = time.perf_counter() - tic
            outputs[m_name] = out
            rows.append({"probe": probe_name, "task": "denoising", "method": m_name, "image": names[i],
                         "seconds": dt, "megapixels": out.size / 1e6, **denoising_scores(out, clean, meta, noisy, i)})
        if fig_dir is not None and i < max_figures:
            explain = getattr(next(iter(encoders.values()), None), "explain", None)
            maps = explain(torch.as_tensor(x)) if callable(explain) else {}
            rows[-1 - len(methods)]["figure"] = str(_plot_denoising(
                outputs, None if clean is None else _as_image(clean), meta, maps,
                Path(fig_dir) / f"{probe_name}_{i}.png", names[i]))
    return rows


def summarise_denoising(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of each score over images, per (probe, method), keeping the order of first appearance."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["probe"], r["method"]), []).append(r)
    out = []
    for (probe, method), rs in groups.items():
        keys = [k for k in ("psnr", "ssim", "region_std", "enl", "ratio_mean", "ratio_var") if all(k in r for r in rs)]
        mp = sum(r.get("megapixels", 0.0) for r in rs)
        summary = {"probe": probe, "method": method, "images": len(rs), **{k: float(np.mean([r[k] for r in rs]))
                                                                             for k in keys}}
        if mp:
            summary["s_per_megapixel"] = sum(r["seconds"] for r in rs) / mp
        if "enl" in summary:  # the ENL box size(s) used, largest first
            sizes = {b.strip() for r in rs for b in str(r.get("enl_box") or "").split(",") if b.strip()}
            summary["enl_box"] = ", ".join(sorted(sizes, key=lambda b: [-int(v) for v in b.split("x")]))
        out.append(summary)
    return out


def _plot_denoising(outputs: dict[str, np.ndarray], clean: np.ndarray | None, meta: dict[str, Any],
                    maps: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(outputs.items()) + ([("clean reference", clean)] if clean is not None else [])
    window = meta.get("window")
    if window is None:  # display range from the noisy input's robust range
        window = tuple(np.percentile(outputs["noisy input"], [1, 99]))
    extra = []
    if meta.get("speckle"):
        trained = [k for k in outputs if k != "noisy input"][:1]
        if trained:
            ratio = outputs["noisy input"] ** 2 / np.maximum(outputs[trained[0]] ** 2, 1e-30)
            extra.append((f"ratio image ({trained[0]})", ratio, (0.0, 3.0)))
    for k, v in (maps or {}).items():
        a = _as_image(v)
        extra.append((k, a, tuple(np.percentile(a, [1, 99]))))
    n = len(panels) + len(extra)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels):
        ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1])
        ax.set_title(name, fontsize=8)
    for ax, (name, img, rng) in zip(axes[0, len(panels):], extra):
        im = ax.imshow(img, cmap="viridis" if "ratio" not in name else "gray", vmin=rng[0], vmax=rng[1])
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ point labels

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


# ------------------------------------------------------------------------------------------------ the report

def random_encoder_like(encoder_dir: str | Path, seed: int = 0) -> nn.Module:
    """A randomly initialised encoder of the same architecture as the saved one (the probe's control)."""
    import models

    cfg = dict(models.read_pretrained_config(encoder_dir)["model"])
    torch.manual_seed(seed)
    return models.create(cfg.pop("name"), **cfg).eval()


def control_encoder(run_dir: str | Path, seed: int | None = None) -> nn.Module:
    """The probes' control for a run: its architecture, initialised with ``seed`` (default: the run's
    ``train.seed``). The loop seeds torch with ``train.seed`` right before building the encoder, so the default
    re-creates the run's own initial weights and "pretrained vs random init" reads as after vs before training."""
    from pretrain.config import load_run_config

    run_dir = Path(run_dir)
    if seed is None:
        seed = load_run_config(run_dir / "config.yaml").train.seed
    return random_encoder_like(run_dir / "encoder", seed)


def set_knn_vote(probes: dict[str, Any], vote: str | None) -> None:
    """Set ``meta["knn_vote"]`` of every classification probe set to ``vote`` (``--set data.probe_knn_vote=plain``
    for the majority vote; ``None`` leaves each set's own, by default :data:`KNN_VOTE`), see :func:`knn_predict`."""
    if vote is None:
        return
    if vote not in KNN_VOTES:
        raise ConfigError(f"data.probe_knn_vote: use one of {', '.join(KNN_VOTES)}, got {vote!r}")
    for ps in probes.values():
        if ps.task == "classification":
            ps.meta["knn_vote"] = vote


def probe_embedding(encoder: nn.Module, ps: Any) -> tuple[Callable[[Any], torch.Tensor], str]:
    """The features a probe reads and their name: ``encoder.embed`` (``"mean"``), or, when the probe set asks for
    ``meta["embedding"] == "channels"`` and the encoder has ``embed_channels`` (channel-independent EEG encoders),
    the per-channel features concatenated in the probe's channel order, float[B, C * D] (``"channels"``: keeps the
    montage, e.g. the lateralisation of motor rhythms, which the mean over channels averages away)."""
    if getattr(ps, "meta", {}).get("embedding") == "channels" and hasattr(encoder, "embed_channels"):
        return (lambda x: encoder.embed_channels(x).flatten(1)), "channels"
    return encoder.embed, "mean"


def probe_encoders(encoders: dict[str, nn.Module], probes: dict[str, Any], batch_size: int = 64,
                   collate: Callable[[list[Any]], Any] | None = None) -> list[dict[str, Any]]:
    """RankMe plus, for each (encoder, probe) pair, kNN and logistic-probe balanced accuracy (classification)
    or kNN and ridge regression R^2 and MAE (``ProbeSet.task == "regression"``). ``collate`` batches probe
    inputs that are sequences of samples rather than arrays (see :func:`embed_array`)."""
    rows = []
    for probe_name, ps in probes.items():
        for enc_name, enc in encoders.items():
            enc.eval()
            task = getattr(ps, "task", "classification")
            embed, embedding = probe_embedding(enc, ps)
            vote = getattr(ps, "meta", {}).get("knn_vote", KNN_VOTE)
            k = int(getattr(ps, "meta", {}).get("knn_k", KNN_K))
            if getattr(ps, "folds", None) is not None:  # cross-validated over blocks: every item is a test item once
                if task != "classification":
                    raise ValueError(f"probe {probe_name!r}: blocked cross-validation needs a classification task")
                z = embed_array(embed, ps.x_train, batch_size, collate)
                y = np.asarray(ps.y_train)
                rows.append({"probe": probe_name, "encoder": enc_name, "task": task, "embedding": embedding,
                             "n_train": len(y), "n_test": len(y), "folds": int(len(np.unique(ps.folds))),
                             "classes": int(len(np.unique(y))), "knn_k": k, "knn_vote": vote,
                             **blocked_cv_scores(z, y, ps.folds, k, vote), "rankme": rankme(torch.from_numpy(z))})
                continue
            z_tr = embed_array(embed, ps.x_train, batch_size, collate)
            z_te = embed_array(embed, ps.x_test, batch_size, collate)
            y_tr, y_te = np.asarray(ps.y_train), np.asarray(ps.y_test)
            row: dict[str, Any] = {"probe": probe_name, "encoder": enc_name, "task": task, "embedding": embedding,
                                   "n_train": len(y_tr), "n_test": len(y_te)}
            if task == "regression":
                groups = ps.meta.get("test_groups")
                knn = knn_regression(z_tr, y_tr, z_te, y_te, groups=groups)
                ridge = ridge_probe(z_tr, y_tr, z_te, y_te, groups=groups)
                row.update(target_std=float(np.std(np.asarray(y_te, dtype=np.float64))),
                           knn_r2=knn["r2"], knn_mae=knn["mae"], ridge_r2=ridge["r2"], ridge_mae=ridge["mae"])
                if groups is not None:
                    row.update(knn_within_r=knn["within_r"], ridge_within_r=ridge["within_r"])
            elif task == "classification":
                row.update(classes=int(len(np.unique(y_tr))), knn_k=k, knn_vote=vote,
                           knn_bacc=knn_accuracy(z_tr, y_tr, z_te, y_te, k, vote),
                           linear_bacc=linear_probe(z_tr, y_tr, z_te, y_te))
            else:
                raise ValueError(f"probe {probe_name!r}: unknown task {task!r} (classification or regression)")
            row["rankme"] = rankme(torch.from_numpy(np.concatenate([z_tr, z_te])))
            rows.append(row)
    return rows


def _plot_curves(rows: list[dict[str, float]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    for key, label in (("loss", "training loss"), ("rankme", "RankMe (held-out batch)")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figs.append(path)
    return figs


def _plot_signal(x: np.ndarray, channels: list[str], fs: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = [i for i in range(x.shape[0]) if np.any(x[i])][:6] or [0]
    fig, axes = plt.subplots(len(used), 1, figsize=(8, 1.2 * len(used) + 0.5), sharex=True, squeeze=False)
    t = np.arange(x.shape[1]) / fs
    for ax, i in zip(axes[:, 0], used):
        ax.plot(t, x[i], lw=0.7)
        ax.set_ylabel(channels[i] if i < len(channels) else str(i), rotation=0, labelpad=18)
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, seed: int | None = None,
                 reference: str | Path | None = None, probe_labels: str | None = None,
                 probe_data: str | Path | None = None) -> Path:
    """Probe the run's encoder against :func:`control_encoder` (a random one of the same architecture, by default the
    run's own initial weights); write ``report.md``. ``seed`` also seeds the per-point probes' sampling."""
    import json

    import models
    import modalities
    from modalities.base import for_other_files
    from pretrain.config import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    seed = cfg.train.seed if seed is None else seed
    modality = modalities.get(cfg.modality)
    data_cfg = dict(cfg.data)
    if data and Path(data).resolve() != Path(str(data_cfg.get("path"))).resolve():
        from pretrain.config import load_yaml

        # other files: their conventions (CT units, label ids, ...) are detected again
        data_cfg = for_other_files(data_cfg, load_yaml(modality.recipe).get("data") or {})
        data_cfg["path"] = str(Path(data).resolve())
    if probe_data:
        data_cfg["probe_data"] = str(Path(probe_data).expanduser().resolve())
    if probe_labels:
        data_cfg["probe_labels"] = probe_labels
    encoder_dir = run_dir / "encoder"
    encoders = {"pretrained": models.load_pretrained(encoder_dir), "random init": control_encoder(run_dir, seed)}
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    from pretrain.user_eval import user_denoising_rows

    # the user's own files first: a bad --reference is refused before the slower built-in probes
    user_rows, user_what = user_denoising_rows(run_dir, modality, data_cfg, cfg.data.get("path"), reference, fig_dir)
    probes: dict[str, Any] = {}
    if data_cfg.get("probe_labels"):  # the user's own labels first (a bad label file fails before the rest)
        from pretrain.user_eval import user_label_probes

        probes = user_label_probes(run_dir, modality, data_cfg, str(data_cfg["probe_labels"]), seed)
    probes.update(modality.probe_targets(data_cfg, Path(data_cfg["path"]) if data_cfg.get("path") else None))
    set_knn_vote(probes, data_cfg.get("probe_knn_vote"))
    graph_inputs = modality.sample_kind == "graph"  # probe inputs are lists of samples, batched by the modality
    embedding_probes = {n: p for n, p in probes.items() if p.task not in ("denoising", "segmentation")}
    rows = probe_encoders(encoders, embedding_probes, collate=modality.collate if graph_inputs else None)
    denoising_rows: list[dict[str, Any]] = []
    segmentation_rows: list[dict[str, Any]] = []
    for name, ps in probes.items():
        if ps.task == "denoising":
            denoising_rows += denoising_probe(encoders, name, ps, fig_dir)
        elif ps.task == "segmentation":
            segmentation_rows += segmentation_probe(encoders, name, ps, seed=seed)
    metrics = []
    if (run_dir / "metrics.csv").is_file():
        from pretrain.loop import read_metrics

        metrics = read_metrics(run_dir)
    figs = _plot_curves(metrics, fig_dir)
    if modality.sample_kind == "signal":
        try:
            ds = modality.build_dataset(data_cfg, "val", 0)
        except modalities.DataError:  # records too short for a held-out window
            ds = modality.build_dataset(data_cfg, "train", 0)
        if len(ds):
            item = ds[0]
            figs.append(_plot_signal(item["signal"].numpy(), list(data_cfg.get("leads") or data_cfg.get("channels") or []),
                                     float(item["fs"]), fig_dir / "sample.png"))
    (run_dir / "probes.json").write_text(json.dumps(rows + denoising_rows + segmentation_rows + user_rows, indent=2))

    lines = [f"# {cfg.modality} / {cfg.objective['name']} / {cfg.model['name']}", "",
             f"- run: `{run_dir}`", f"- training data: `{cfg.data.get('path')}`"]
    if data_cfg.get("path") != cfg.data.get("path"):
        lines.append(f"- evaluated on: `{data_cfg.get('path')}`")
    lines.append(f"- steps: {cfg.train.max_steps}, global batch {cfg.train.batch_size} x accumulate "
                 f"{cfg.optim.accumulate} (micro-batches of {cfg.train.micro_batch} per process)")
    if metrics:
        last = metrics[-1]
        first = metrics[0]
        logged = {r["loss"] for r in metrics if "loss" in r}
        lines.append(f"- loss: {first.get('loss', float('nan')):.6g} (step {int(first['step'])}) -> "
                     f"{last.get('loss', float('nan')):.6g} (step {int(last['step'])})"
                     + (f"; **constant: every logged loss is exactly {next(iter(logged))!r}**"
                        if len(logged) == 1 and len(metrics) > 1 else ""))
        standard = {"step", "loss", "lr", "weight_decay", "grad_norm", "samples_per_s", "rankme", "embed_std", "collapse"}
        scalars = {k: v for k, v in last.items() if k not in standard and isinstance(v, float)}
        if scalars:  # the objective's own scalars (codebook perplexity, task accuracies, momentum, ...)
            lines.append("- objective scalars at the last logged step: "
                         + ", ".join(f"{k} {v:.4g}" for k, v in sorted(scalars.items())))
        rm = [r for r in metrics if "rankme" in r]
        if rm:
            lines.append(f"- RankMe on the held-out batch: {rm[0]['rankme']:.2f} (step {int(rm[0]['step'])}) -> "
                         f"{rm[-1]['rankme']:.2f} (step {int(rm[-1]['step'])})")
    classification = [r for r in rows if r.get("task", "classification") == "classification"]
    regression = [r for r in rows if r.get("task") == "regression"]
    if classification or not (rows or denoising_rows or segmentation_rows):
        lines += ["", "## Probes (frozen encoder, fixed split or blocked cross-validation, balanced accuracy)", ""]
    if classification:
        lines += ["| probe | encoder | train / test | classes | kNN (5, vote) | logistic | RankMe |",
                  "|---|---|---|---|---|---|---|"]
        for r in classification:
            split = (f"{r['n_train']} in {r['folds']} blocked folds" if r.get("folds")
                     else f"{r['n_train']} / {r['n_test']}")
            lines.append(f"| {r['probe']} | {r['encoder']} | {split} | {r['classes']} | "
                         f"{r['knn_bacc']:.3f} ({r.get('knn_vote', 'plain')}) | {r['linear_bacc']:.3f} | "
                         f"{r['rankme']:.1f} |")
    if regression:
        lines += ["", "## Regression probes (frozen encoder, fixed split; R^2, mean absolute error and the mean "
                  "within-recording correlation r of predictions and targets)", "",
                  "| probe | encoder | train / test | test target std | kNN R^2 | kNN MAE | kNN r within | ridge R^2 | "
                  "ridge MAE | ridge r within | RankMe |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in regression:
            lines.append(f"| {r['probe']} | {r['encoder']} | {r['n_train']} / {r['n_test']} | {r['target_std']:.2f} | "
                         f"{r['knn_r2']:.3f} | {r['knn_mae']:.2f} | {_fmt_score(r.get('knn_within_r'))} | "
                         f"{r['ridge_r2']:.3f} | {r['ridge_mae']:.2f} | {_fmt_score(r.get('ridge_within_r'))} | "
                         f"{r['rankme']:.1f} |")
    lines += _user_denoising_section(user_rows, user_what)
    lines += _denoising_section(denoising_rows) + _segmentation_section(segmentation_rows)
    if rows or denoising_rows or segmentation_rows:
        for name, ps in probes.items():
            if ps.description or ps.source:
                source = f" (data: {ps.source})" if ps.source else ""
                lines.append(f"\n- **{name}**{source}: {ps.description}")
    else:
        lines.append("No labelled probe data was found for this modality (see its data cards).")
    figs += [Path(r["figure"]) for r in user_rows + denoising_rows if "figure" in r]
    lines += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _fmt_score(v: Any, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _fmt_enl(r: dict[str, Any]) -> str:
    """ENL with the size of its boxes, ``12.3 (48x48 boxes)``."""
    if r.get("enl") is None:
        return ""
    return f"{r['enl']:.1f}" + (f" ({r['enl_box']} boxes)" if r.get("enl_box") else "")


def _denoising_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Denoising (mean over images; PSNR/SSIM against the clean reference where one exists)", "",
             "| probe | method | images | PSNR dB | SSIM | std in uniform region | ENL | ratio mean | ratio var | s / MPix |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summarise_denoising(rows):
        lines.append(f"| {r['probe']} | {r['method']} | {r['images']} | {_fmt_score(r.get('psnr'), 2)} | "
                     f"{_fmt_score(r.get('ssim'))} | {_fmt_score(r.get('region_std'), 2)} | {_fmt_enl(r)} | "
                     f"{_fmt_score(r.get('ratio_mean'))} | {_fmt_score(r.get('ratio_var'))} | "
                     f"{_fmt_score(r.get('s_per_megapixel'), 2)} |")
    return lines


def _user_denoising_section(rows: list[dict[str, Any]], what: str) -> list[str]:
    """Per image of the user's data: the noisy input and the denoised output, with what was compared."""
    if not rows:
        return []
    window = any("psnr_window" in r for r in rows)
    lines = ["", "## Your data: denoised output" + (" vs your clean reference" if any("psnr" in r for r in rows) else ""),
             "", what, "",
             "| image | method | PSNR dB | SSIM |" + (" PSNR dB window | SSIM window |" if window else "")
             + " std in uniform region | ENL | ratio mean | ratio var |",
             "|---|---|---|---|" + ("---|---|" if window else "") + "---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['method']} | {_fmt_score(r.get('psnr'), 2)} | {_fmt_score(r.get('ssim'))} |"
                     + (f" {_fmt_score(r.get('psnr_window'), 2)} | {_fmt_score(r.get('ssim_window'))} |" if window else "")
                     + f" {_fmt_score(r.get('region_std'), 4)} | {_fmt_enl(r)} | {_fmt_score(r.get('ratio_mean'))} | "
                     f"{_fmt_score(r.get('ratio_var'))} |")
    return lines


def _segmentation_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Per-point probes (frozen features; all decoder levels vs the last level only)", "",
             "| probe | encoder | levels | dim | train / test points | classes | linear mIoU | linear acc | kNN mIoU | kNN acc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['probe']} | {r['encoder']} | {r['levels']} | {r['dim']} | {r['n_train']} / {r['n_test']} | "
                     f"{r['classes']} | {r['linear_miou']:.3f} | {r['linear_acc']:.3f} | {r['knn_miou']:.3f} | "
                     f"{r['knn_acc']:.3f} |")
    return lines
