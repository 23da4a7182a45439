"""Zero-shot low-dose CT denoising on the real slices of ../shared/data/ct: noisy vs ZS-N2N vs Filter2Noise.

For every slice x I0 in {1e5, 5e4, 2.5e4} (simulated low dose, modalities/ct/lowdose.py; the clean reference is
the noise-free reconstruction) each method is trained on the noisy slice alone through the one training loop
(``pretrain.loop.train``, per-image mode: one slice, ``--steps`` steps, its paper's optimiser settings), then the
slice is denoised. PSNR and SSIM are computed in the soft-tissue window [-160, 240] HU (data range 400) with
``pretrain.evaluate.psnr`` / ``ssim``; the noise std in the most uniform soft-tissue box of the clean slice with
``region_std``. Seconds per slice = training + inference wall time; seconds per step from the same runs.
Each network sees its own input scale: the filter [-1024, 3072] HU -> [0, 1], the ZS-N2N CNN the soft-tissue
window [-160, 240] HU -> [0, 1] unclipped (on the 12-bit scale it barely moves in 500 steps; models/zsn2n.py).

``--reference PATH`` (the authors' ``filter2noise.py``, not shipped here) additionally times one training step of
the reference implementation and of ours on the same 512 x 512 noisy slice, interleaved, single-threaded.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/ct_denoising.py [--steps 500] [--reference PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import models  # noqa: E402
from modalities.ct.dataset import CTSlices  # noqa: E402
from modalities.ct.probes import uniform_box  # noqa: E402
from modalities.ct.volumes import index_ct  # noqa: E402
from pretrain.config import OptimConfig, RunConfig, TrainConfig  # noqa: E402
from pretrain.evaluate import psnr, region_std, ssim  # noqa: E402
from pretrain.loop import train  # noqa: E402

SHARED = (REPO / ".." / "shared" / "data" / "ct").resolve()
SLICES = ("693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm", "CT_small.dcm")
DOSES = (1e5, 5e4, 2.5e4)
WINDOW = (-160.0, 240.0)
METHODS = {  # name -> (model, objective, optimiser settings of the paper)
    "ZS-N2N": ({"name": "zsn2n"}, {"name": "zs_n2n"}, dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)),
    "F2N": ({"name": "bilateral"}, {"name": "filter2noise"}, dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)),
}


def scores(out: np.ndarray, clean: np.ndarray, box: tuple[int, ...]) -> dict[str, float]:
    a, b = np.clip(out, *WINDOW), np.clip(clean, *WINDOW)
    rng = WINDOW[1] - WINDOW[0]
    return {"psnr": psnr(a, b, rng), "ssim": ssim(a, b, rng), "std": region_std(out, box)}


def run_method(method: str, path: Path, dose: float, steps: int, work: Path) -> tuple[np.ndarray, float, float]:
    model, objective, optim = METHODS[method]
    cfg = RunConfig(
        modality="ct", data={"path": str(path), "patch": None, "dose_i0": [dose], "val_fraction": 0.0},
        model=dict(model), objective=dict(objective),
        optim=OptimConfig(min_lr=optim["lr"] * 0.01, warmup_steps=0, weight_decay_end=optim["weight_decay"],
                          eps=1e-8, **optim),
        # batch 2 of the one slice: the objective filters it once per step (objective.unique)
        train=TrainConfig(max_steps=steps, batch_size=2, num_workers=0, threads=1, log_every=max(1, steps // 5),
                          rankme_every=10**9, ckpt_every=10**9, evaluate=False))
    tic = time.perf_counter()
    result = train(cfg, work / f"{method}_{path.stem}_{dose:g}", progress=False)
    train_s = time.perf_counter() - tic
    enc = models.load_pretrained(result.encoder_dir)
    ds = CTSlices(index_ct(path), "train", dose_i0=[dose], val_fraction=0.0)
    tic = time.perf_counter()
    out = enc.denoise(ds[0]["image"])[0].numpy()
    return out, train_s + time.perf_counter() - tic, train_s / steps


def time_reference(reference: Path, steps: int) -> list[dict[str, float]]:
    """Seconds per training step, reference vs ours, interleaved on the same noisy 512 x 512 slice ([0, 1] units
    as the reference expects, the same mapping as ours)."""
    from models.bilateral import BilateralDenoiser
    from pretrain.objectives.filter2noise import Filter2Noise

    spec = importlib.util.spec_from_file_location("reference_filter2noise", reference)
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    ds = CTSlices(index_ct(SHARED / SLICES[0]), "train", dose_i0=[5e4], val_fraction=0.0)
    hu = ds[0]["image"][None]
    x01 = (hu + 1024.0) / 4096.0
    torch.manual_seed(0)
    ref = ref_mod.DenoisingPipeline(num_stages=2, patch_size=8)
    ref(x01)  # materialise its lazy layers
    ref_loss = ref_mod.LossFunction(torch.device("cpu"), lambda_=350)
    ours = Filter2Noise(BilateralDenoiser())
    runs = {"reference": (ref.parameters(), lambda: ref_loss(x01, ref)),
            "ours": (ours.parameters(), lambda: ours({"image": hu})["loss"])}
    opts = {k: torch.optim.AdamW(list(p), lr=1e-3) for k, (p, _) in runs.items()}
    rows = []
    for rep in range(2):
        for name, (_, loss_fn) in runs.items():
            times = []
            for _ in range(steps + 1):
                tic = time.perf_counter()
                loss_fn().backward()
                opts[name].step()
                opts[name].zero_grad()
                times.append(time.perf_counter() - tic)
            rows.append({"impl": name, "round": rep, "s_per_step": float(np.median(times[1:])),
                         "load": os.getloadavg()[0]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500, help="training steps per slice, the same for both methods")
    ap.add_argument("--slices", nargs="*", default=list(SLICES))
    ap.add_argument("--doses", nargs="*", type=float, default=list(DOSES))
    ap.add_argument("--reference", type=Path, default=None, help="the authors' filter2noise.py, for step timing")
    ap.add_argument("--reference-steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ct_denoising.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("MODALITIES_CACHE", str(Path(tempfile.gettempdir()) / "modalities_bench_cache"))
    rows: list[dict] = []
    load_start = os.getloadavg()
    timing = time_reference(args.reference, args.reference_steps) if args.reference else []
    if timing:
        print(json.dumps(timing), flush=True)

    def save(partial: bool) -> None:  # after every row: a long run interrupted under load still leaves its rows
        out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "steps": args.steps,
               "window_hu": WINDOW, "load_start": load_start, "load_now": os.getloadavg(), "partial": partial,
               "rows": rows, "step_timing_vs_reference": timing}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.slices:
            path = SHARED / name
            for dose in args.doses:
                ds = CTSlices(index_ct(path), "train", dose_i0=[dose], val_fraction=0.0)
                s = ds[0]
                noisy, clean = s["image"][0].numpy(), s["clean"][0].numpy()
                box = uniform_box(clean)
                row = {"slice": name, "size": list(noisy.shape), "i0": dose, "box": list(box),
                       "noisy": scores(noisy, clean, box)}
                for method in METHODS:
                    out, seconds, per_step = run_method(method, path, dose, args.steps, Path(tmp))
                    row[method] = {**scores(out, clean, box), "s_per_slice": seconds, "s_per_step": per_step,
                                   "load": os.getloadavg()[0]}
                rows.append(row)
                print(json.dumps(row), flush=True)
                save(partial=True)
    means = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in ("psnr", "ssim", "std")}
             for m in ("noisy", *METHODS)}
    verdict = {"f2n_raises_psnr_every_slice": all(r["F2N"]["psnr"] > r["noisy"]["psnr"] for r in rows),
               "f2n_beats_zsn2n_on_average": means["F2N"]["psnr"] > means["ZS-N2N"]["psnr"]}
    lines = [f"PSNR / SSIM in [{WINDOW[0]:g}, {WINDOW[1]:g}] HU, {args.steps} steps per slice for both methods", "",
             "| slice | I0 | noisy PSNR / SSIM | ZS-N2N PSNR / SSIM | F2N PSNR / SSIM | std noisy / ZS-N2N / F2N (HU) "
             "| s/slice ZS-N2N / F2N |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        n, z, f = r["noisy"], r["ZS-N2N"], r["F2N"]
        lines.append(f"| {r['slice']} | {r['i0']:.3g} | {n['psnr']:.2f} / {n['ssim']:.3f} | {z['psnr']:.2f} / "
                     f"{z['ssim']:.3f} | {f['psnr']:.2f} / {f['ssim']:.3f} | {n['std']:.1f} / {z['std']:.1f} / "
                     f"{f['std']:.1f} | {z['s_per_slice']:.0f} / {f['s_per_slice']:.0f} |")
    lines.append(f"| **mean** | | {means['noisy']['psnr']:.2f} / {means['noisy']['ssim']:.3f} | "
                 f"{means['ZS-N2N']['psnr']:.2f} / {means['ZS-N2N']['ssim']:.3f} | {means['F2N']['psnr']:.2f} / "
                 f"{means['F2N']['ssim']:.3f} | | |")
    if timing:
        lines += ["", "| implementation | round | s / step (512 x 512, 1 thread) | load |", "|---|---|---|---|"]
        lines += [f"| {t['impl']} | {t['round']} | {t['s_per_step']:.2f} | {t['load']:.1f} |" for t in timing]
    print("\n".join(lines))
    save(partial=False)
    out = json.loads(args.out.read_text())
    args.out.write_text(json.dumps({**out, "means": means, "verdict": verdict, "table": lines}, indent=1))


if __name__ == "__main__":
    main()
