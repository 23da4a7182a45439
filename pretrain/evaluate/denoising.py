"""Denoisers (CT, SAR) scored against clean references or, without one, by the noise level in uniform regions, the
equivalent number of looks and the ratio image; :func:`denoising_probe` runs every denoiser and baseline of a probe set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pretrain.metrics import psnr, ssim

__all__ = ["Box", "denoising_probe", "denoising_scores", "enl", "enl_box_size", "ratio_image_stats", "region_std",
           "summarise_denoising"]


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
            rows[-1 - len(methods)]["figure"] = str(plot_denoising(
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


def plot_denoising(outputs: dict[str, np.ndarray], clean: np.ndarray | None, meta: dict[str, Any],
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
