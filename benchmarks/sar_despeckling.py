"""SAR despeckling: noisy vs boxcar vs Lee vs refined Lee vs MERLIN (ours) vs the published MERLIN weights.

- Simulated speckle (``modalities.sar.probes.simulated_probe``: the held-out scikit-image pictures camera and coins
  under correlated complex speckle): PSNR / SSIM of the amplitude against the expected amplitude, range [0, 100]
  (``pretrain.evaluate.psnr`` / ``ssim``).
- Real crops of ``../shared/data/sar`` (ENVISAT, UAVSAR; no clean reference): ENL (``pretrain.evaluate.enl``) in the
  three most homogeneous 48 x 48 boxes of each crop (``modalities.sar.probes.homogeneous_boxes``) and the ratio
  image noisy / despeckled intensity (``ratio_image_stats``; ideal mean 1, variance 1).
- Seconds per megapixel of every method on the ENVISAT crop (one thread), a MERLIN training step (batch 12 of
  256 x 256, width 48: the reference's 12.7 s/step figure) and tiled inference over a 4k x 4k scene streamed from
  disk (``modalities.sar.tiling.despeckle_scene``) with its peak resident memory (``resource`` ru_maxrss of a
  fresh process) against a 1k x 1k scene.

MERLIN (ours) is the encoder of a ``python -m pretrain sar`` run: one run on the simulated default (``--sim``), one
per real crop (``--envisat``, ``--uavsar``). The published weights (``deepdespeckling``: TerraSAR-X stripmap and
spotlight, Sentinel-1 TOPS) match none of these sensors; they are run on every input for reference.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/sar_despeckling.py --sim RUN/encoder \\
        --envisat RUN/encoder --uavsar RUN/encoder [--scene-size 4096] [--skip-train-step]

The encoders of ``results/sar_despeckling.json`` (width 32, batch 8 of 96 x 96 patches, lr 1.5e-3, one thread,
on 2 cores shared with other jobs at load 4-14) came from
``python -m pretrain sar [--data CROP] --batch-size 8 --set data.patch=96 --set data.patches_per_scene=64
--set model.width=32 --set optim.lr=1.5e-3 --set optim.warmup_steps=20 --set train.threads=1``, stopped and
continued with ``--resume RUN --max-steps N`` as CPU time allowed (each continuation restarts the cosine schedule
from the new total): simulated 160 -> 260 -> 480 -> 800 steps; UAVSAR 50 -> 150 -> 450 steps; ENVISAT 50 -> 150 ->
450 -> 1500 -> 4000 steps (its ratio-image mean on the crop: 0.834, 0.905, 0.936, 0.960: each part's estimate
follows its own input's spatially correlated speckle less as training goes on; the held-out-part ratio stays
0.99-1.05 throughout, so the estimate is not biased). The memory rows were run separately with
``--memory-only SIZE --memory-width W`` and passed with ``--memory-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import models  # noqa: E402
from models.unet2d import PUBLISHED_MERLIN, load_published_merlin  # noqa: E402
from modalities.sar.baselines import BASELINES  # noqa: E402
from modalities.sar.probes import homogeneous_boxes, real_probe, simulated_probe  # noqa: E402
from pretrain.evaluate import enl, psnr, ratio_image_stats, ssim  # noqa: E402

SHARED = (REPO / ".." / "shared" / "data" / "sar").resolve()
REFERENCE = {"inference_s_per_mpix": 6.7, "train_step_s_batch12_256": 12.7}  # deepdespeckling, ../shared/REFERENCES.md


def _time(fn: Callable[[], Any]) -> tuple[Any, float]:
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def score_simulated(methods: dict[str, Callable[[Any], np.ndarray]]) -> list[dict[str, Any]]:
    ps = simulated_probe()
    rows = []
    for x, clean, name in zip(ps.x_test, ps.y_test, ps.meta["names"]):
        ref = clean[0].astype(np.float64)
        outs = {"noisy": np.abs(x).astype(np.float64)}
        for m, fn in methods.items():
            outs[m] = np.asarray(fn(x))[0].astype(np.float64)
        for m, a in outs.items():
            rows.append({"data": "simulated", "image": name, "method": m, "psnr": psnr(a, ref, 100.0),
                         "ssim": ssim(a, ref, 100.0), "ratio_mean": ratio_image_stats(np.abs(x) ** 2, a ** 2)["ratio_mean"]})
    return rows


def score_real(methods: dict[str, Callable[[Any], np.ndarray]], x: np.ndarray, name: str,
               merlins: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    noisy_i = np.abs(x.astype(np.complex128)) ** 2
    boxes = homogeneous_boxes(noisy_i)
    valid = noisy_i > 0
    rows = []
    outs = {"noisy": np.sqrt(noisy_i)}
    for m, fn in methods.items():
        outs[m] = np.asarray(fn(x))[0].astype(np.float64)
    for m, a in outs.items():
        stats = ratio_image_stats(noisy_i[valid], a[valid] ** 2)
        rows.append({"data": name, "method": m, "enl": float(np.mean([enl(a ** 2, b) for b in boxes])),
                     "ratio_mean": stats["ratio_mean"], "ratio_var": stats["ratio_var"], "boxes": boxes})
        if m in (merlins or {}):  # MERLIN: the other part's intensity over each part's estimate (1 = unbiased)
            rows[-1]["held_out_ratio_mean"] = merlins[m].held_out_ratio(x)
    return rows


def ratio_figure(x: np.ndarray, outs: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy = np.abs(x)
    lo, hi = np.percentile(noisy, [1, 99])
    fig, axes = plt.subplots(2, len(outs) + 1, figsize=(2.6 * (len(outs) + 1), 5.4))
    axes[0, 0].imshow(noisy, cmap="gray", vmin=lo, vmax=hi)
    axes[0, 0].set_title("noisy", fontsize=8)
    axes[1, 0].axis("off")
    for k, (m, a) in enumerate(outs.items(), start=1):
        axes[0, k].imshow(a, cmap="gray", vmin=lo, vmax=hi)
        axes[0, k].set_title(m, fontsize=8)
        axes[1, k].imshow(noisy ** 2 / np.maximum(a ** 2, 1e-30), cmap="gray", vmin=0, vmax=3)
        axes[1, k].set_title(f"ratio image ({m})", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def seconds_per_mpix(methods: dict[str, Callable[[Any], np.ndarray]], x: np.ndarray) -> dict[str, float]:
    mpix = x.size / 1e6
    return {m: _time(lambda: fn(x))[1] / mpix for m, fn in methods.items()}


def train_step_seconds(width: int = 48, batch: int = 12, size: int = 256, steps: int = 2) -> float:
    """Seconds per MERLIN optimiser step (forward, backward, Adam) on ENVISAT patches."""
    from pretrain.objectives.merlin import Merlin

    z = np.load(SHARED / "envisat_slc_500x500_reim.npy")[100:100 + size, 100:100 + size]
    image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(z, -1, 0))).float()
    batch_data = {"image": image.expand(batch, -1, -1, -1).contiguous(), "seed": torch.arange(batch)}
    obj = Merlin(models.create("merlin_unet", width=width, log_min=-3.0, log_max=5.0, eps=1e-4))
    opt = torch.optim.Adam(obj.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 1):
        tic = time.perf_counter()
        loss = obj(batch_data)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - tic)
    return float(np.median(times[1:]))


class _MemorySampler:
    """Peak anonymous and file-backed resident memory of this process (``/proc/self/status`` RssAnon / RssFile,
    sampled every 20 ms in a thread): anonymous memory is what tiling must bound; file-backed pages of the memory
    maps are reclaimable cache."""

    def __init__(self) -> None:
        import threading

        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> dict[str, float]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in self.peak:
                out[key] = float(line.split()[1]) / 1024
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, v in self._read().items():
                self.peak[k] = max(self.peak[k], v)
            self._stop.wait(0.02)

    def __enter__(self) -> "_MemorySampler":
        self.start = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def scene_memory(size: int, width: int, tile: int, overlap: int) -> dict[str, Any]:
    """Run in a fresh process: despeckle a ``size x size`` SLC streamed from a memory-mapped .npy to a memory-mapped
    output; report peak resident memory (anonymous and file-backed) and the time."""
    from modalities.sar.tiling import despeckle_scene

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "scene.npy"
        crop = np.load(SHARED / "envisat_slc_500x500_reim.npy")[8:488, 8:488]
        block = (crop[..., 0] + 1j * crop[..., 1]).astype(np.complex64)
        scene = np.lib.format.open_memmap(src, mode="w+", dtype=np.complex64, shape=(size, size))
        for r in range(0, size, 480):  # the real crop repeated (flipped every other row of blocks)
            for c in range(0, size, 480):
                b = block[::-1] if (r // 480) % 2 else block
                scene[r:r + 480, c:c + 480] = b[:size - r, :size - c]
        scene.flush()
        del scene, crop, block
        net = models.create("merlin_unet", width=width, log_min=-3.0, log_max=5.0, eps=1e-4, tile=tile, overlap=overlap)
        with _MemorySampler() as mem:
            _, dt = _time(lambda: despeckle_scene(net.eval(), src, Path(tmp) / "out.npy"))
    return {"size": size, "width": width, "tile": tile, "overlap": overlap, "seconds": dt,
            "s_per_mpix": dt / (size * size / 1e6), "peak_anon_mib": mem.peak["RssAnon"],
            "anon_before_mib": mem.start["RssAnon"], "peak_file_mib": mem.peak["RssFile"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "input_mib": size * size * 8 / 2 ** 20, "output_mib": size * size * 4 / 2 ** 20,
            "untiled_activation_mib_estimate": 2 * size * size * (2 * width + 1) * 4 / 2 ** 20}


def _load(path: str | None) -> torch.nn.Module | None:
    return models.load_pretrained(path) if path else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim", help="encoder dir of a MERLIN run on the simulated default")
    p.add_argument("--envisat", help="encoder dir of a MERLIN run on the ENVISAT crop")
    p.add_argument("--uavsar", help="encoder dir of a MERLIN run on the UAVSAR crop")
    p.add_argument("--scene-size", type=int, default=4096)
    p.add_argument("--skip-train-step", action="store_true")
    p.add_argument("--memory-width", type=int, default=16,
                   help="network width of the tiled-scene runs (memory does not depend on the weights)")
    p.add_argument("--memory-json", nargs="*", default=None,
                   help="results of earlier '--memory-only SIZE' runs to report instead of running them")
    p.add_argument("--memory-only", type=int, help=argparse.SUPPRESS)  # child mode: one scene, print JSON
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sar_despeckling.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.memory_only:
        print(json.dumps(scene_memory(args.memory_only, args.memory_width, 512, 64)))
        return

    published = {f"published {n}": load_published_merlin(n) for n in PUBLISHED_MERLIN}
    base = dict(BASELINES)
    ours = {k: _load(v) for k, v in (("sim", args.sim), ("envisat", args.envisat), ("uavsar", args.uavsar))}
    result: dict[str, Any] = {"command": " ".join([Path(sys.executable).name] + sys.argv), "reference": REFERENCE,
                              "loadavg_start": os.getloadavg(), "threads": 1,
                              "encoders": {k: (v.config if v is not None else None) for k, v in ours.items()}}
    fig_dir = Path(args.out).parent / "sar_despeckling_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    sim_methods = {**base, **({"MERLIN (ours, simulated)": ours["sim"].denoise} if ours["sim"] else {}),
                   **{k: m.denoise for k, m in published.items()}}
    result["simulated"] = score_simulated(sim_methods)
    real = real_probe(SHARED, probe_size=512)
    result["real"] = []
    for x, name in zip(real.x_test, real.meta["names"]):
        key = "envisat" if "envisat" in name else "uavsar"
        methods = {**base, **({f"MERLIN (ours, {key})": ours[key].denoise} if ours[key] else {}),
                   **{k: m.denoise for k, m in published.items()}}
        merlins = {**({f"MERLIN (ours, {key})": ours[key]} if ours[key] else {}), **published}
        result["real"] += score_real(methods, x, key, merlins)
        shown = {k: np.asarray(methods[k](x))[0] for k in methods if not k.startswith("published") or "sentinel" in k}
        ratio_figure(x, shown, fig_dir / f"{key}.png", f"{name}: despeckled amplitude and ratio image")
    envisat = real.x_test[0]
    speed_methods = {**base, **{k: m.denoise for k, m in published.items() if "sentinel" in k},
                     **{f"MERLIN (ours, {k})": m.denoise for k, m in ours.items() if m is not None}}
    result["s_per_mpix"] = seconds_per_mpix(speed_methods, envisat)
    result["s_per_mpix_image"] = f"ENVISAT crop {envisat.shape[0]} x {envisat.shape[1]}, one thread"
    if not args.skip_train_step:
        result["train_step_s_batch12_256_width48"] = train_step_seconds()
    if args.memory_json is not None:
        result["memory"] = [json.loads(Path(f).read_text().strip().splitlines()[-1]) for f in args.memory_json]
    else:
        result["memory"] = []
        for size in (1024, args.scene_size):
            child = subprocess.run([sys.executable, __file__, "--memory-only", str(size), "--memory-width",
                                    str(args.memory_width)], capture_output=True, text=True, check=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
            result["memory"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    result["loadavg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print(report(result))


def report(r: dict[str, Any]) -> str:
    lines = ["## Simulated speckle (camera, coins): amplitude PSNR / SSIM against the clean reference", "",
             "| method | PSNR dB | SSIM | ratio mean |", "|---|---|---|---|"]
    methods = list(dict.fromkeys(row["method"] for row in r["simulated"]))
    for m in methods:
        rows = [x for x in r["simulated"] if x["method"] == m]
        lines.append(f"| {m} | {np.mean([x['psnr'] for x in rows]):.2f} | {np.mean([x['ssim'] for x in rows]):.3f} | "
                     f"{np.mean([x['ratio_mean'] for x in rows]):.3f} |")
    lines += ["", "## Real crops (no reference): ENL in homogeneous boxes, ratio image noisy / despeckled intensity", "",
              "| crop | method | ENL | ratio mean | ratio var | held-out-part ratio mean (MERLIN) |",
              "|---|---|---|---|---|---|"]
    for row in r["real"]:
        held = f"{row['held_out_ratio_mean']:.3f}" if "held_out_ratio_mean" in row else ""
        lines.append(f"| {row['data']} | {row['method']} | {row['enl']:.1f} | {row['ratio_mean']:.3f} | "
                     f"{row['ratio_var']:.3f} | {held} |")
    lines += ["", f"## Seconds per megapixel ({r['s_per_mpix_image']}; reference MERLIN inference "
              f"{REFERENCE['inference_s_per_mpix']} s/MPix)", "", "| method | s / MPix |", "|---|---|"]
    lines += [f"| {m} | {v:.2f} |" for m, v in r["s_per_mpix"].items()]
    if "train_step_s_batch12_256_width48" in r:
        t = r["train_step_s_batch12_256_width48"]
        lines += ["", f"MERLIN training step, batch 12 of 256 x 256, width 48: {t:.1f} s (reference "
                  f"{REFERENCE['train_step_s_batch12_256']} s; ratio {t / REFERENCE['train_step_s_batch12_256']:.2f})"]
    lines += ["", "## Tiled inference from disk (tile 512, overlap 64, one thread)", "",
              "| scene | width | s / MPix | peak anonymous MiB (before) | peak file-backed MiB | input / output MiB | "
              "one untiled decoder activation MiB |", "|---|---|---|---|---|---|---|"]
    for m in r["memory"]:
        lines.append(f"| {m['size']} x {m['size']} | {m['width']} | {m['s_per_mpix']:.1f} | {m['peak_anon_mib']:.0f} "
                     f"({m['anon_before_mib']:.0f}) | {m['peak_file_mib']:.0f} | {m['input_mib']:.0f} / "
                     f"{m['output_mib']:.0f} | {m['untiled_activation_mib_estimate']:.0f} |")
    lines.append(f"\nload average {r['loadavg_start']} -> {r['loadavg_end']} (2 cores shared)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
