"""Fine-tuning a pretrained encoder on labels, against the same architecture trained from scratch.

``python -m pretrain finetune ENCODER_OR_RUN_DIR --data PATH --target NAME [...]`` (or :func:`finetune`) runs, for
every mode x label fraction x seed, one supervised run on the one training loop (:mod:`pretrain.loop`, objective
:class:`~pretrain.objectives.supervised.Supervised`, model :class:`models.heads.PredictionModel`), then scores the
fine-tuned model on the held-out test split and writes ``report.md`` / ``results.json`` / a metric-vs-label-fraction
plot. Modes:

- ``full``: the pretrained encoder and the heads trained together (layer-wise learning-rate decay);
- ``linear``: the pretrained encoder frozen, linear heads (the linear-probe protocol);
- ``scratch``: the same architecture randomly initialised and trained like ``full`` (the control).

Seeds change the split (e.g. a different balanced scaffold split for molecules), the label subset and the
initialisation of the heads, so the spread over seeds is the spread a user would see. Data options start from the
pretraining run's (sampling rate, window, voxel grid: the encoder sees inputs prepared as in pretraining), then the
modality recipe's ``finetune:`` section (split kind, descriptors, head widths, optimiser and schedule), then
``--set`` overrides.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import models
import modalities
from modalities.base import FILE_CONVENTIONS
from pretrain import config as config_mod
from pretrain.config import ConfigError
from pretrain.metrics import score
from pretrain.objectives.supervised import TASKS, batch_extra, batch_targets, model_input

MODES = ("full", "linear", "scratch")
METRICS = {"regression": ("rmse", "mae", "r2"), "binary": ("auroc", "accuracy", "f1"),
           "multiclass": ("balanced_accuracy", "auroc", "f1", "accuracy"), "multilabel": ("auroc", "f1", "accuracy"),
           "segmentation": ("miou", "accuracy")}
LOWER_IS_BETTER = {"rmse", "mae"}


@dataclass
class FinetuneResult:
    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Any, collate: Any, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predictions) of a fine-tuned :class:`~models.heads.PredictionModel` over a dataset."""
    model.eval()
    ys, ps = [], []
    for i in range(0, len(dataset), batch_size):
        batch = collate([dataset[j] for j in range(i, min(len(dataset), i + batch_size))])
        ps.append(model.predict(model_input(batch), batch_extra(batch)).float().cpu().numpy())
        ys.append(batch_targets(batch).float().cpu().numpy().reshape(len(ps[-1]), -1))
    return np.concatenate(ys), np.concatenate(ps)


# ------------------------------------------------------------------------------------------------ runs

def _encoder_folder(path: Path) -> Path:
    """An encoder folder, or a run folder holding ``encoder/``."""
    path = Path(path)
    if (path / "encoder" / models.CONFIG_FILE).is_file():
        return path / "encoder"
    if (path / models.CONFIG_FILE).is_file():
        return path
    raise ConfigError(f"{path}: neither a pretrained encoder folder nor a run folder with encoder/ "
                      f"(no {models.CONFIG_FILE})")


def run_config(encoder_dir: Path, data: str | Path, targets: Sequence[str], task: str, mode: str, fraction: float,
               seed: int, overrides: Sequence[str] = (), labels: str | None = None) -> config_mod.RunConfig:
    """The fully resolved config of one fine-tuning run."""
    meta = models.read_pretrained_config(encoder_dir)
    modality_name = (meta.get("extra") or {}).get("modality")
    if modality_name not in modalities.names():
        raise ConfigError(f"{encoder_dir}: the encoder does not say which modality it was trained on (config.json "
                          f"extra.modality = {modality_name!r})")
    modality = modalities.get(modality_name)
    ft = config_mod.load_yaml(modality.recipe).get("finetune") or {}
    head = dict(ft.get("model") or {})
    # the pretraining run's preprocessing (rate, window, voxel grid, ...), not its corpus or its split
    # (file conventions such as CT units or LiDAR label ids are detected again on the fine-tuning files)
    pretrained_data = {k: v for k, v in ((meta.get("extra") or {}).get("data") or {}).items()
                       if k not in ("path", "labels", "targets", "split", "split_seed", "label_fraction", "vocab",
                                    *FILE_CONVENTIONS)}
    hidden = [] if mode == "linear" else head.pop("hidden_dims", [256])
    head.pop("hidden_dims", None)
    data: dict[str, Any] = {"path": str(Path(data).expanduser().resolve()), "targets": list(targets),
                            "split_seed": int(seed), "label_fraction": float(fraction)}
    if labels:  # "events" (annotations), "points" (per-point label files) or a per-record label table
        is_file = Path(labels).expanduser().is_file()  # a label table; else a keyword (events, points)
        data["labels"] = str(Path(labels).expanduser().resolve()) if is_file else labels
    objective = {"name": "supervised", "task": task, "init_from": None if mode == "scratch" else str(encoder_dir),
                 "freeze_encoder": mode == "linear", **(ft.get("objective") or {})}
    if mode in ("linear", "scratch"):  # layer-wise decay protects pretrained features; a random encoder has none
        objective["layer_decay"] = 1.0
    task_layer = {"modality": modality_name, "data": data, "train": {"seed": int(seed), "evaluate": False},
                  "model": {"name": "prediction_model", "encoder": dict(meta["model"]), "task": task,
                            "hidden_dims": hidden, **head},
                  "objective": objective}
    # the pretraining recipe, then the encoder's preprocessing, the recipe's finetune section and the task, then --set
    sections = {k: ft[k] for k in ("data", "optim", "train") if ft.get(k)}
    return config_mod.resolve(modality.recipe, overrides=list(overrides),
                              layers=[{"data": pretrained_data}, sections, task_layer])


def _size_model(cfg: config_mod.RunConfig, modality: Any, task: str) -> int:
    """Set the output and extra-feature widths from the training data (number of targets / classes, descriptors);
    returns how many training items the run's label fraction keeps."""
    from modalities.base import labelled_subset

    ds = modality.build_dataset(cfg.data, "train", 0)
    if len(ds) == 0:
        raise modalities.DataError(f"{cfg.data['path']}: no labelled training items")
    y = np.asarray(ds.targets())
    if task == "segmentation":
        if not hasattr(ds, "num_classes"):
            raise ConfigError(f"--task segmentation: {cfg.modality} data has no per-point labels (use data with "
                              f"per-point label files, e.g. --labels points for LiDAR)")
        out_dim = int(ds.num_classes)
    elif task == "multiclass":
        levels = np.unique(y[np.isfinite(y)])
        if not np.all(levels == np.round(levels)) or levels.min() < 0:
            raise ConfigError(f"--task multiclass: targets {', '.join(map(str, cfg.data.targets))} are not class "
                              f"indices (found values such as {levels[:3].tolist()})")
        out_dim = int(levels.max()) + 1
    else:
        out_dim = int(y.reshape(len(y), -1).shape[1])
        if task in ("binary", "multilabel"):
            finite = y[np.isfinite(y)]
            if not np.all(np.isin(finite, (0.0, 1.0))):
                raise ConfigError(f"--task {task}: targets must be 0/1 labels, found values such as "
                                  f"{np.unique(finite)[:3].tolist()} (use --task regression for measured values)")
    extra = batch_extra(modality.collate([ds[0]]))
    cfg.model["out_dim"] = out_dim
    cfg.model["extra_dim"] = 0 if extra is None else int(extra.shape[-1])
    fraction = cfg.data.label_fraction or 1.0
    return len(labelled_subset(ds, fraction, cfg.data.split_seed)) if fraction < 1 else len(ds)


def default_task(labels: str | None) -> str:
    """The task a label source implies when ``--task`` is not given: annotated events are classes (multiclass),
    per-point labels are segmentation, columns and properties are measured values (regression)."""
    return {"events": "multiclass", "points": "segmentation"}.get(str(labels), "regression")


def finetune(encoder: str | Path, data: str | Path, targets: Sequence[str], task: str | None = None,
             modes: Sequence[str] = ("full", "scratch"), label_fractions: Sequence[float] = (1.0,),
             seeds: int | Sequence[int] = 3, out_dir: str | Path | None = None, overrides: Sequence[str] = (),
             progress: bool = False, labels: str | None = None) -> FinetuneResult:
    """Fine-tune ``encoder`` (an encoder or run folder) on ``data``'s ``targets``; see the module docstring.

    ``labels`` (signals): ``"events"`` to label windows from the records' annotations, or a per-record label table
    (:mod:`modalities.signals.labelled`); molecules read their labels from the data file's columns / SD tags.
    ``task`` None: :func:`default_task` of ``labels``.

    Returns the per-run rows (test metrics), the mean/std summary per (mode, fraction) and the report path.
    """
    from pretrain.loop import train

    task = task or default_task(labels)
    if task not in TASKS:
        raise ConfigError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"--mode: {bad[0]!r} is not one of {', '.join(MODES)}")
    for f in label_fractions:
        if not 0.0 < float(f) <= 1.0:
            raise ConfigError(f"--label-fractions: {f!r} is not in (0, 1]")
    if not targets and task != "segmentation":  # per-point labels come from the data's label files
        raise ConfigError("--target: name at least one label column / property")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    encoder_dir = _encoder_folder(Path(encoder))
    out = Path(out_dir) if out_dir else encoder_dir.parent / "finetune" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    result = FinetuneResult(out)
    for mode in modes:
        for fraction in label_fractions:
            for seed in seed_list:
                cfg = run_config(encoder_dir, data, targets, task, mode, float(fraction), seed, overrides, labels)
                modality = modalities.get(cfg.modality)
                train_items = _size_model(cfg, modality, task)
                run_dir = out / f"{mode}_f{float(fraction):g}_s{seed}"
                tic = time.perf_counter()
                res = train(cfg, run_dir, resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=progress)
                seconds = time.perf_counter() - tic
                if res.rank != 0:
                    continue
                model = models.load_pretrained(res.encoder_dir)
                row: dict[str, Any] = {"mode": mode, "label_fraction": float(fraction), "seed": seed,
                                       "train_items": train_items, "seconds": seconds, "run": str(run_dir)}
                for split in ("val", "test"):
                    ds = modality.build_dataset(cfg.data, split, 0)
                    if len(ds) == 0:
                        raise modalities.DataError(f"{cfg.data['path']}: the {split} split is empty (too few labelled "
                                                   f"items for a train / val / test split)")
                    y, p = predict_dataset(model, ds, modality.collate, batch_size=1 if task == "segmentation" else 64)
                    row.update({f"{split}_{k}": v for k, v in score(task, y, p).items()})
                    row[f"{split}_items"] = len(ds)
                result.rows.append(row)
                (out / "results.json").write_text(json.dumps(result.rows, indent=2))
    result.summary = summarise(result.rows, task)
    result.report = write_report(result, encoder_dir, data, targets, task)
    return result


def summarise(rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Mean and std over seeds of each test metric, per (mode, label fraction)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["label_fraction"]), []).append(r)
    out = []
    for (mode, fraction), rs in groups.items():
        s: dict[str, Any] = {"mode": mode, "label_fraction": fraction, "seeds": len(rs),
                             "train_items": float(np.mean([r["train_items"] for r in rs]))}
        for m in METRICS[task]:
            v = np.array([r[f"test_{m}"] for r in rs], dtype=np.float64)
            s[f"{m}_mean"], s[f"{m}_std"] = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        out.append(s)
    return out


def write_report(result: FinetuneResult, encoder_dir: Path, data: str | Path, targets: Sequence[str], task: str) -> Path:
    metrics = METRICS[task]
    lines = [f"# Fine-tuning `{encoder_dir}` on `{data}` ({', '.join(targets) or 'per-point labels'}; {task})", "",
             "Test-split metrics, mean +- std over seeds (each seed: its own split, label subset and head init).", "",
             "| mode | label fraction | train items | seeds | " + " | ".join(metrics) + " |",
             "|---|---|---|---|" + "---|" * len(metrics)]
    for s in result.summary:
        lines.append(f"| {s['mode']} | {s['label_fraction']:g} | {s['train_items']:.0f} | {s['seeds']} | "
                     + " | ".join(f"{s[f'{m}_mean']:.3f} +- {s[f'{m}_std']:.3f}" for m in metrics) + " |")
    fig = _plot(result, metrics[0], task)
    if fig is not None:
        lines += ["", f"![{fig.stem}]({fig.name})"]
    lines += ["", "Runs (one folder each, with config.yaml, metrics.csv and the fine-tuned model in encoder/):", ""]
    lines += [f"- `{r['run']}`: test " + ", ".join(f"{m} {r[f'test_{m}']:.3f}" for m in metrics) for r in result.rows]
    path = result.out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (result.out_dir / "summary.json").write_text(json.dumps(result.summary, indent=2))
    return path


def _plot(result: FinetuneResult, metric: str, task: str) -> Path | None:
    fractions = sorted({s["label_fraction"] for s in result.summary})
    if len(fractions) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for mode in dict.fromkeys(s["mode"] for s in result.summary):
        pts = sorted((s["label_fraction"], s[f"{metric}_mean"], s[f"{metric}_std"]) for s in result.summary
                     if s["mode"] == mode)
        x, y, e = map(np.array, zip(*pts))
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("label fraction")
    ax.set_ylabel(f"test {metric}" + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = result.out_dir / f"{metric}_vs_label_fraction.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
