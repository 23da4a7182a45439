"""Which encoders a report compares (the run's, and a random one of the same architecture) and how each probe set
is run on them, by its task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pretrain.config import ConfigError
from pretrain.evaluate.denoising import denoising_probe
from pretrain.evaluate.embedding import (KNN_K, KNN_VOTE, KNN_VOTES, blocked_cv_scores, embed_array, knn_accuracy,
                                         knn_regression, linear_probe, ridge_probe)
from pretrain.evaluate.segmentation import segmentation_probe
from pretrain.monitors import rankme

__all__ = ["PROBES", "ProbeContext", "classification_probe", "control_encoder", "probe_embedding", "probe_encoders",
           "random_encoder_like", "regression_probe", "run_probes", "set_knn_vote"]


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


@dataclass
class ProbeContext:
    """What a probe may need besides the encoders and its probe set."""

    batch_size: int = 64
    collate: Callable[[list[Any]], Any] | None = None  # batches probe inputs that are lists of samples (graphs)
    fig_dir: Path | None = None  # denoising figures
    seed: int = 0  # per-point probes' sampling


def _embeddings(enc: nn.Module, ps: Any, ctx: ProbeContext) -> tuple[dict[str, Any], Any, Any]:
    """The row fields every embedding probe shares, and the training / test embeddings (test None under blocked
    cross-validation, where every item is a test item once)."""
    enc.eval()
    embed, embedding = probe_embedding(enc, ps)
    row = {"task": getattr(ps, "task", "classification"), "embedding": embedding}
    z_tr = embed_array(embed, ps.x_train, ctx.batch_size, ctx.collate)
    z_te = None if getattr(ps, "folds", None) is not None else embed_array(embed, ps.x_test, ctx.batch_size,
                                                                          ctx.collate)
    return row, z_tr, z_te


def classification_probe(encoders: dict[str, nn.Module], name: str, ps: Any, ctx: ProbeContext
                         ) -> list[dict[str, Any]]:
    """kNN (``meta["knn_k"]``, ``meta["knn_vote"]``) and logistic balanced accuracy and RankMe per encoder, on the
    fixed split or cross-validated over the probe set's blocks (``ps.folds``)."""
    rows = []
    vote = getattr(ps, "meta", {}).get("knn_vote", KNN_VOTE)
    k = int(getattr(ps, "meta", {}).get("knn_k", KNN_K))
    for enc_name, enc in encoders.items():
        row, z_tr, z_te = _embeddings(enc, ps, ctx)
        y_tr = np.asarray(ps.y_train)
        row = {"probe": name, "encoder": enc_name, **row}
        if z_te is None:
            row.update(n_train=len(y_tr), n_test=len(y_tr), folds=int(len(np.unique(ps.folds))),
                       classes=int(len(np.unique(y_tr))), knn_k=k, knn_vote=vote,
                       **blocked_cv_scores(z_tr, y_tr, ps.folds, k, vote), rankme=rankme(torch.from_numpy(z_tr)))
        else:
            y_te = np.asarray(ps.y_test)
            row.update(n_train=len(y_tr), n_test=len(y_te), classes=int(len(np.unique(y_tr))), knn_k=k,
                       knn_vote=vote, knn_bacc=knn_accuracy(z_tr, y_tr, z_te, y_te, k, vote),
                       linear_bacc=linear_probe(z_tr, y_tr, z_te, y_te),
                       rankme=rankme(torch.from_numpy(np.concatenate([z_tr, z_te]))))
        rows.append(row)
    return rows


def regression_probe(encoders: dict[str, nn.Module], name: str, ps: Any, ctx: ProbeContext) -> list[dict[str, Any]]:
    """kNN-mean and ridge R^2 / MAE (and the within-recording correlation when ``meta["test_groups"]`` is given) and
    RankMe per encoder, on the fixed split."""
    if getattr(ps, "folds", None) is not None:
        raise ValueError(f"probe {name!r}: blocked cross-validation needs a classification task")
    rows = []
    groups = ps.meta.get("test_groups")
    for enc_name, enc in encoders.items():
        row, z_tr, z_te = _embeddings(enc, ps, ctx)
        y_tr, y_te = np.asarray(ps.y_train), np.asarray(ps.y_test)
        knn = knn_regression(z_tr, y_tr, z_te, y_te, groups=groups)
        ridge = ridge_probe(z_tr, y_tr, z_te, y_te, groups=groups)
        row = {"probe": name, "encoder": enc_name, **row, "n_train": len(y_tr), "n_test": len(y_te),
               "target_std": float(np.std(np.asarray(y_te, dtype=np.float64))), "knn_r2": knn["r2"],
               "knn_mae": knn["mae"], "ridge_r2": ridge["r2"], "ridge_mae": ridge["mae"]}
        if groups is not None:
            row.update(knn_within_r=knn["within_r"], ridge_within_r=ridge["within_r"])
        row["rankme"] = rankme(torch.from_numpy(np.concatenate([z_tr, z_te])))
        rows.append(row)
    return rows


def _denoising(encoders: dict[str, nn.Module], name: str, ps: Any, ctx: ProbeContext) -> list[dict[str, Any]]:
    return denoising_probe(encoders, name, ps, ctx.fig_dir)


def _segmentation(encoders: dict[str, nn.Module], name: str, ps: Any, ctx: ProbeContext) -> list[dict[str, Any]]:
    return segmentation_probe(encoders, name, ps, seed=ctx.seed)


# a probe set's ``task`` -> the probe that runs it: f(encoders, probe name, probe set, context) -> report rows
PROBES: dict[str, Callable[[dict[str, nn.Module], str, Any, ProbeContext], list[dict[str, Any]]]] = {
    "classification": classification_probe,
    "regression": regression_probe,
    "denoising": _denoising,
    "segmentation": _segmentation,
}


def run_probes(encoders: dict[str, nn.Module], probes: dict[str, Any], ctx: ProbeContext | None = None,
               tasks: tuple[str, ...] = tuple(PROBES)) -> list[dict[str, Any]]:
    """Every probe set through :data:`PROBES` by its ``task`` (one of ``tasks``), in probe-set order; each row
    carries its ``"task"``."""
    ctx = ctx or ProbeContext()
    rows: list[dict[str, Any]] = []
    for name, ps in probes.items():
        task = getattr(ps, "task", "classification")
        if task not in tasks:
            raise ValueError(f"probe {name!r}: unknown task {task!r} ({' or '.join(tasks)})")
        rows += PROBES[task](encoders, name, ps, ctx)
    return rows


def probe_encoders(encoders: dict[str, nn.Module], probes: dict[str, Any], batch_size: int = 64,
                   collate: Callable[[list[Any]], Any] | None = None) -> list[dict[str, Any]]:
    """The embedding probes (classification and regression probe sets): RankMe plus kNN and logistic balanced
    accuracy, or kNN and ridge R^2 and MAE. ``collate``: see :func:`embed_array`."""
    return run_probes(encoders, probes, ProbeContext(batch_size=batch_size, collate=collate),
                      tasks=("classification", "regression"))
