"""The run report: probes of the run's encoder against a random one of the same architecture, the user's own
data first, then ``report.md`` with figures and ``probes.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pretrain.evaluate.denoising import summarise_denoising
from pretrain.evaluate.probes import ProbeContext, control_encoder, run_probes, set_knn_vote
from pretrain.runlog import read_metrics

__all__ = ["evaluate_run"]


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
    data_cfg = cfg.data
    if data and Path(data).resolve() != Path(str(cfg.data.path)).resolve():
        # other files: their conventions (CT units, label ids, ...) are detected again
        data_cfg = modality.options.of({**for_other_files(cfg.data), "path": str(Path(data).resolve())})
    if probe_data:
        data_cfg = data_cfg.replace(probe_data=str(Path(probe_data).expanduser().resolve()))
    if probe_labels:
        data_cfg = data_cfg.replace(probe_labels=probe_labels)
    encoder_dir = run_dir / "encoder"
    encoders = {"pretrained": models.load_pretrained(encoder_dir), "random init": control_encoder(run_dir, seed)}
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    from pretrain.evaluate.user import user_denoising_rows

    # the user's own files first: a bad --reference is refused before the slower built-in probes
    user_rows, user_what = user_denoising_rows(run_dir, modality, data_cfg, cfg.data.path, reference, fig_dir)
    probes: dict[str, Any] = {}
    if data_cfg.probe_labels:  # the user's own labels first (a bad label file fails before the rest)
        from pretrain.evaluate.user import user_label_probes

        probes = user_label_probes(run_dir, modality, data_cfg, data_cfg.probe_labels, seed)
    probes.update(modality.probe_targets(data_cfg, Path(data_cfg.path) if data_cfg.path else None))
    set_knn_vote(probes, data_cfg.probe_knn_vote)
    graph_inputs = modality.sample_kind == "graph"  # probe inputs are lists of samples, batched by the modality
    every = run_probes(encoders, probes, ProbeContext(collate=modality.collate if graph_inputs else None,
                                                      fig_dir=fig_dir, seed=seed))
    rows = [r for r in every if r["task"] in ("classification", "regression")]
    denoising_rows = [r for r in every if r["task"] == "denoising"]
    segmentation_rows = [r for r in every if r["task"] == "segmentation"]
    metrics = read_metrics(run_dir) if (run_dir / "metrics.csv").is_file() else []
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
             f"- run: `{run_dir}`", f"- training data: `{cfg.data.path}`"]
    if data_cfg.path != cfg.data.path:
        lines.append(f"- evaluated on: `{data_cfg.path}`")
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
