"""Label-free monitors and labelled probes of frozen encoders, and the run report.

- :func:`rankme`: effective rank of an embedding matrix (Garrido et al. 2023), a label-free quality monitor.
- :func:`knn_accuracy` / :func:`linear_probe`: a fixed-split k-NN (cosine) and a logistic-regression probe.
- :func:`knn_regression` / :func:`ridge_probe`: the same for continuous targets (heart rate): k-NN mean and ridge
  regression, scored by R^2 and mean absolute error.
- :func:`evaluate_run`: embeds each probe set with the run's pretrained encoder and with a randomly initialised
  encoder of the same architecture, and writes ``report.md`` with figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


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


def _nearest(z_train: np.ndarray, z_test: np.ndarray, k: int) -> np.ndarray:
    """int[N_test, k] indices of each test embedding's ``k`` nearest training embeddings: cosine similarity on
    embeddings standardised with the training statistics (ties broken by training order)."""
    a, b = _standardise(z_train, z_test)
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    return np.argsort(-(b @ a.T), axis=1, kind="stable")[:, :min(k, len(a))]


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int = 5) -> float:
    """Balanced accuracy of a majority vote among the ``k`` nearest training embeddings (cosine)."""
    votes = y_train[_nearest(z_train, z_test, k)]
    pred = np.array([np.bincount(v, minlength=int(y_train.max()) + 1).argmax() for v in votes])
    return balanced_accuracy(y_test, pred)


def linear_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, c: float = 1.0,
                 seed: int = 0) -> float:
    """Balanced accuracy of an L2-regularised logistic regression on standardised frozen embeddings."""
    from sklearn.linear_model import LogisticRegression

    a, b = _standardise(z_train, z_test)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(a, y_train)
    return balanced_accuracy(y_test, clf.predict(b))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - sum (y - p)^2 / sum (y - mean y)^2`` (0 for predicting the test mean,
    negative when worse; a constant ``y_true`` gives 1.0 for an exact prediction, else -inf)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    ss_res = float(((y_true - y_pred) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else float("-inf")
    return 1.0 - ss_res / ss_tot


def _regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return {"r2": r2_score(y_true, y_pred), "mae": float(np.abs(y_true - y_pred).mean())}


def knn_regression(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                   k: int = 5) -> dict[str, float]:
    """``{"r2", "mae"}`` of predicting each test target as the mean target of its ``k`` nearest training
    embeddings (cosine on standardised embeddings, as :func:`knn_accuracy`)."""
    pred = np.asarray(y_train, dtype=np.float64)[_nearest(z_train, z_test, k)].mean(axis=1)
    return _regression_scores(y_test, pred)


RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def ridge_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                alpha: float | None = None) -> dict[str, float]:
    """``{"r2", "mae"}`` of ridge regression ``min_w,b ||A w + b - y||^2 + alpha ||w||^2`` on standardised
    frozen embeddings ``A`` (the intercept is not penalised). ``alpha=None`` picks it from :data:`RIDGE_ALPHAS` by
    leave-one-out error on the training set only (a fixed alpha over-fits 256-d embeddings of a few hundred
    windows)."""
    from sklearn.linear_model import Ridge, RidgeCV

    a, b = _standardise(z_train, z_test)
    y = np.asarray(y_train, dtype=np.float64)
    reg = Ridge(alpha=alpha) if alpha is not None else RidgeCV(alphas=RIDGE_ALPHAS)
    reg.fit(a, y)
    return _regression_scores(y_test, reg.predict(b))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over classes present in ``y_true`` of the per-class recall."""
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


# ------------------------------------------------------------------------------------------------ the report

def random_encoder_like(encoder_dir: str | Path, seed: int = 0) -> nn.Module:
    """A randomly initialised encoder of the same architecture as the saved one (the probe's control)."""
    import models

    cfg = dict(models.read_pretrained_config(encoder_dir)["model"])
    torch.manual_seed(seed)
    return models.create(cfg.pop("name"), **cfg).eval()


def probe_encoders(encoders: dict[str, nn.Module], probes: dict[str, Any], batch_size: int = 64,
                   collate: Callable[[list[Any]], Any] | None = None) -> list[dict[str, Any]]:
    """RankMe plus, for each (encoder, probe) pair, kNN and logistic-probe balanced accuracy (classification)
    or kNN and ridge regression R^2 and MAE (``ProbeSet.task == "regression"``). ``collate`` batches probe
    inputs that are sequences of samples rather than arrays (see :func:`embed_array`)."""
    rows = []
    for probe_name, ps in probes.items():
        for enc_name, enc in encoders.items():
            enc.eval()
            z_tr = embed_array(enc.embed, ps.x_train, batch_size, collate)
            z_te = embed_array(enc.embed, ps.x_test, batch_size, collate)
            y_tr, y_te = np.asarray(ps.y_train), np.asarray(ps.y_test)
            task = getattr(ps, "task", "classification")
            row: dict[str, Any] = {"probe": probe_name, "encoder": enc_name, "task": task, "n_train": len(y_tr),
                                   "n_test": len(y_te)}
            if task == "regression":
                knn, ridge = knn_regression(z_tr, y_tr, z_te, y_te), ridge_probe(z_tr, y_tr, z_te, y_te)
                row.update(target_std=float(np.std(np.asarray(y_te, dtype=np.float64))),
                           knn_r2=knn["r2"], knn_mae=knn["mae"], ridge_r2=ridge["r2"], ridge_mae=ridge["mae"])
            elif task == "classification":
                row.update(classes=int(len(np.unique(y_tr))), knn_bacc=knn_accuracy(z_tr, y_tr, z_te, y_te),
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


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, seed: int = 0) -> Path:
    """Probe the run's encoder against a random one of the same architecture; write ``report.md``."""
    import json

    import models
    import modalities
    from pretrain.config import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    modality = modalities.get(cfg.modality)
    data_cfg = dict(cfg.data)
    if data:
        data_cfg["path"] = str(Path(data).resolve())
    encoder_dir = run_dir / "encoder"
    encoders = {"pretrained": models.load_pretrained(encoder_dir), "random init": random_encoder_like(encoder_dir, seed)}
    probes = modality.probe_targets(data_cfg, Path(data_cfg["path"]) if data_cfg.get("path") else None)
    graph_inputs = modality.sample_kind == "graph"  # probe inputs are lists of samples, batched by the modality
    rows = probe_encoders(encoders, probes, collate=modality.collate if graph_inputs else None)

    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
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
    (run_dir / "probes.json").write_text(json.dumps(rows, indent=2))

    lines = [f"# {cfg.modality} / {cfg.objective['name']} / {cfg.model['name']}", "",
             f"- run: `{run_dir}`", f"- data: `{data_cfg.get('path')}`",
             f"- steps: {cfg.train.max_steps}, global batch {cfg.train.batch_size} x accumulate {cfg.optim.accumulate}"]
    if metrics:
        last = metrics[-1]
        first = metrics[0]
        lines.append(f"- loss: {first.get('loss', float('nan')):.4f} (step {int(first['step'])}) -> "
                     f"{last.get('loss', float('nan')):.4f} (step {int(last['step'])})")
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
    if classification or not rows:
        lines += ["", "## Probes (frozen encoder, fixed split, balanced accuracy)", ""]
    if classification:
        lines += ["| probe | encoder | train / test | classes | kNN | logistic | RankMe |", "|---|---|---|---|---|---|---|"]
        for r in classification:
            lines.append(f"| {r['probe']} | {r['encoder']} | {r['n_train']} / {r['n_test']} | {r['classes']} | "
                         f"{r['knn_bacc']:.3f} | {r['linear_bacc']:.3f} | {r['rankme']:.1f} |")
    if regression:
        lines += ["", "## Regression probes (frozen encoder, fixed split; R^2 and mean absolute error)", "",
                  "| probe | encoder | train / test | test target std | kNN R^2 | kNN MAE | ridge R^2 | ridge MAE | RankMe |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in regression:
            lines.append(f"| {r['probe']} | {r['encoder']} | {r['n_train']} / {r['n_test']} | {r['target_std']:.2f} | "
                         f"{r['knn_r2']:.3f} | {r['knn_mae']:.2f} | {r['ridge_r2']:.3f} | {r['ridge_mae']:.2f} | "
                         f"{r['rankme']:.1f} |")
    if rows:
        for name, ps in probes.items():
            if ps.description:
                lines.append(f"\n- **{name}**: {ps.description}")
    else:
        lines.append("No labelled probe data was found for this modality (see its data cards).")
    lines += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
