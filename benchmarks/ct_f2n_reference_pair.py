"""Per-image Filter2Noise on the authors' public low-dose chest CT sample, side by side with their code.

The Filter2Noise repository ships one normalised ([0, 1]) low-dose chest CT slice and its normal-dose image
(``noisy.npy`` / ``clean.npy``, 512 x 512). This script, given that checkout (``--reference PATH``; not shipped here):

1. writes both as NIfTI files with a chest-CT affine (0.74 mm pixels), the way a user would hold them;
2. runs the authors' ``filter2noise.py`` as published (500 steps, AdamW + OneCycleLR, lambda 400, 2 stages) in a
   scratch copy of their folder and reads its logged PSNR / SSIM and wall time;
3. runs ours as a user would: ``python -m pretrain ct --data noisy.nii.gz --recipe per_image`` (one whole slice,
   the authors' settings) for each ``--steps`` value, then ``python -m pretrain evaluate RUN --reference clean.nii.gz``, and reads
   the PSNR of the written ``RUN/denoised/noisy.nii.gz`` (checked: same shape and affine as the input) from the
   run's ``probes.json``; wall time is the training command's, start-up included;
4. repeats the pair ``--rounds`` times, alternating, and prints a table and the median time ratio; writes JSON;
5. times ``--step-timing`` training steps of both, interleaved in one process, 3 rounds: the per-step ratio, which
   machine load shifts for both alike (the end-to-end runs above are minutes apart).

Both sides use the same torch threads (``--threads``, default 2). The reference needs ``loguru``
(``pip install loguru``).

    python benchmarks/ct_f2n_reference_pair.py --reference ~/src/Filter2Noise [--steps 500,800] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.array([[-0.74, 0, 0, 189.4], [0, -0.74, 0, 189.4], [0, 0, 1.0, -120.0], [0, 0, 0, 1]])


def write_pair(reference: Path, work: Path) -> tuple[Path, Path]:
    import nibabel as nib

    out = []
    for name in ("noisy", "clean"):
        a = np.load(reference / f"{name}.npy").astype(np.float32)
        path = work / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(a.T[:, :, None], AFFINE), str(path))  # NIfTI [x, y, z]: columns first
        out.append(path)
    return out[0], out[1]


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


RUNNER = """import sys
import filter2noise
default = filter2noise.setup_environment
filter2noise.setup_environment = lambda seed=int(sys.argv[1]): default(seed)
filter2noise.main()
"""


def run_reference(reference: Path, work: Path, threads: int, seed: int | None = None) -> dict:
    scratch = work / "reference"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    for name in ("filter2noise.py", "noisy.npy", "clean.npy"):
        shutil.copy(reference / name, scratch / name)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND="Agg")
    tic = time.perf_counter()
    cmd = [sys.executable, "filter2noise.py"]
    if seed is not None:  # their script fixes seed 77 in setup_environment's default; run it with another
        (scratch / "run_seed.py").write_text(RUNNER)
        cmd = [sys.executable, "run_seed.py", str(seed)]
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"reference failed ({proc.returncode}): {log[-2000:]}")
    found = {k: float(v) for k, v in re.findall(r"(psnr_denoised|ssim_denoised|psnr_noisy|ssim_noisy): ([0-9.]+)", log)}
    train = re.search(r"Inference time: ([0-9.]+) seconds", log)  # the authors' name for their training time
    return {"impl": "reference", "steps": 500, "seed": 77 if seed is None else seed, "seconds": seconds, "train_seconds": float(train.group(1)) if train else None,
            "psnr": found.get("psnr_denoised"), "ssim": found.get("ssim_denoised"), "psnr_noisy": found.get("psnr_noisy"),
            "load": load()}


def run_ours(noisy: Path, clean: Path, work: Path, steps: int, threads: int, extra: list[str], seed: int = 0) -> dict:
    import nibabel as nib

    run = work / f"ours_{steps}_s{seed}"
    if run.exists():
        shutil.rmtree(run)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "pretrain", "ct", "--data", str(noisy), "--max-steps", str(steps), "--seed", str(seed),
           "--set", f"train.threads={threads}", "--no-eval", "--quiet", "--out", str(run), *extra]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if proc.returncode != 0:
        raise SystemExit(f"ours failed: {proc.stderr[-2000:]}")
    written = run / "denoised" / noisy.name
    a, b = nib.load(str(noisy)), nib.load(str(written))
    assert a.shape == b.shape and np.allclose(a.affine, b.affine), "denoised NIfTI lost the input's geometry"
    ev = subprocess.run([sys.executable, "-m", "pretrain", "evaluate", str(run), "--reference", str(clean)], env=env,
                        capture_output=True, text=True)
    if ev.returncode != 0:
        raise SystemExit(f"evaluate failed: {ev.stderr[-2000:]}")
    rows = {r["method"]: r for r in json.loads((run / "probes.json").read_text()) if r.get("probe") == "your data"}
    return {"impl": "ours", "steps": steps, "seed": seed, "seconds": seconds, "psnr": rows["denoised"]["psnr"],
            "ssim": rows["denoised"]["ssim"], "psnr_noisy": rows["noisy input"]["psnr"], "load": load(),
            "command": " ".join(cmd[1:]).replace(str(work), "WORK")}


def step_timing(reference: Path, steps: int, rounds: int, threads: int) -> list[dict]:
    """Seconds per training step of the two implementations, interleaved in one process on the authors' noisy
    slice (the same loss, lambda 400, AdamW): a ratio that machine load shifts for both alike."""
    import importlib.util

    import torch

    sys.path.insert(0, str(REPO))
    from models.bilateral import BilateralDenoiser
    from pretrain.objectives.filter2noise import Filter2Noise

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("reference_filter2noise", reference / "filter2noise.py")
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    x = torch.from_numpy(np.load(reference / "noisy.npy").astype(np.float32))[None, None]
    torch.manual_seed(0)
    ref = ref_mod.DenoisingPipeline(num_stages=2, patch_size=8)
    ref(x)  # materialise its lazy layers
    ref_loss = ref_mod.LossFunction(torch.device("cpu"), lambda_=400)
    ours = Filter2Noise(BilateralDenoiser(hu_range=(0.0, 1.0), sigma_init=None), edge_weight=400.0)
    runs = {"reference": (list(ref.parameters()), lambda: ref_loss(x, ref)),
            "ours": (list(ours.parameters()), lambda: ours({"image": x})["loss"])}
    opts = {k: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01) for k, (p, _) in runs.items()}
    rows = []
    for r in range(rounds):
        for name, (_, loss_fn) in runs.items():
            times = []
            for _ in range(steps + 1):  # the first step warms caches up
                tic = time.perf_counter()
                loss_fn().backward()
                opts[name].step()
                opts[name].zero_grad()
                times.append(time.perf_counter() - tic)
            rows.append({"impl": name, "round": r, "s_per_step": float(np.median(times[1:])), "load": load()})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="the authors' Filter2Noise checkout")
    p.add_argument("--steps", default="500", help="comma-separated step counts of our runs")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set for our runs")
    p.add_argument("--recipe", default="per_image", help="our named recipe")
    p.add_argument("--step-timing", type=int, default=5, metavar="N",
                   help="also time N training steps of each, interleaved, 3 rounds (0: skip)")
    p.add_argument("--skip-runs", action="store_true", help="only the interleaved step timing")
    p.add_argument("--skip-reference", action="store_true", help="our runs only (their time ratio is then not taken)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds of our runs (the reference's script fixes 77)")
    p.add_argument("--reference-seed", type=int, default=None, help="run the reference with this seed instead of 77")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ct_f2n_reference_pair.json")
    args = p.parse_args()
    extra = ["--recipe", args.recipe] + [x for o in args.overrides for x in ("--set", o)]
    rows = []
    timing = step_timing(args.reference.expanduser(), args.step_timing, 3, args.threads) if args.step_timing else []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        noisy, clean = write_pair(args.reference.expanduser(), work)
        for r in range(0 if args.skip_runs else args.rounds):
            if not args.skip_reference:
                rows.append({"round": r, **run_reference(args.reference.expanduser(), work, args.threads,
                                                         args.reference_seed)})
                print(rows[-1], flush=True)
            for steps in (int(s) for s in args.steps.split(",")):
                for seed in (int(v) for v in args.seeds.split(",")):
                    rows.append({"round": r, **run_ours(noisy, clean, work, steps, args.threads, extra, seed)})
                    print(rows[-1], flush=True)
    if timing:
        per = {k: statistics.median(t["s_per_step"] for t in timing if t["impl"] == k) for k in ("reference", "ours")}
        ratio = statistics.median(b["s_per_step"] / a["s_per_step"] for a, b in
                                  zip([t for t in timing if t["impl"] == "reference"], [t for t in timing if t["impl"] == "ours"]))
        print(f"step timing, interleaved: reference {per['reference']:.3f} s/step, ours {per['ours']:.3f} s/step, "
              f"ours / reference {ratio:.2f}")
    ref_s = [r["seconds"] for r in rows if r["impl"] == "reference"]
    print(f"\n| impl | steps | PSNR dB | SSIM | wall s (median) | time / reference |\n|---|---|---|---|---|---|")
    summary = []
    for key in dict.fromkeys((r["impl"], r["steps"]) for r in rows):
        rs = [r for r in rows if (r["impl"], r["steps"]) == key]
        s = statistics.median(r["seconds"] for r in rs)
        ratio = statistics.median(a["seconds"] / b for a, b in zip(rs, ref_s)) if ref_s else float("nan")
        summary.append({"impl": key[0], "steps": key[1], "psnr": statistics.median(r["psnr"] for r in rs),
                        "ssim": statistics.median(r["ssim"] for r in rs), "seconds": s, "ratio_to_reference": ratio})
        print(f"| {key[0]} | {key[1]} | {summary[-1]['psnr']:.2f} | {summary[-1]['ssim']:.4f} | {s:.0f} | {ratio:.2f} |")
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "threads": args.threads, "rows": rows,
                                    "summary": summary, "step_timing": timing}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
