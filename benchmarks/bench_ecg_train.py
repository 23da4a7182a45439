"""ECG-JEPA training-step speed and memory: ViT-XS and ViT-S at batch 32 of 12 x 5000, fp32 and bf16-mixed.

One step = the JEPA objective's forward (EMA teacher on all 200 tokens, student on the visible ones, predictor),
backward, AdamW step and EMA update, exactly as ``pretrain/loop.py`` runs it, on real 10 s windows of the shared
ECG records. Reference figures measured on this kind of machine (../shared/REFERENCES.md, kweimann/ECG-JEPA,
2 threads, fp32): ViT-XS 1.45 s/step, ViT-S 3.82 s/step; the target is >= 1.5x.

    python benchmarks/bench_ecg_train.py [--steps 7] [--models vit1d_xs,vit1d_s] [--precisions 32-true,bf16-mixed]
    python benchmarks/bench_ecg_train.py --device cuda --batch 256 --steps 30 --out ecg_train_cuda.json

On CUDA each step is timed after ``torch.cuda.synchronize`` and the peak allocated GPU memory is reported.

Prints a table and writes benchmarks/results/ecg_train.json. Speed on this machine drifts 20-40 % within minutes:
the numbers are medians, and precisions are interleaved step by step so their ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

import models
from modalities.ecg import LEADS_12, lead_alias
from modalities.signals.index import index_records
from modalities.signals.windows import SignalWindows
from pretrain import objectives
from pretrain.config import OptimConfig
from pretrain.loop import cuda_attention_kernels, make_optimizer

REPO = Path(__file__).resolve().parents[1]
REFERENCE_S_PER_STEP = {"vit1d_xs": 1.45, "vit1d_s": 3.82}


def real_batch(batch: int) -> torch.Tensor:
    ds = SignalWindows(index_records(REPO / ".." / "shared" / "data" / "signals"), channels=LEADS_12, fs=500.0,
                       window_s=10.0, channel_aliases=lead_alias)
    return torch.stack([ds[(i % len(ds), 1000 + i)]["signal"] for i in range(batch)])


class Runner:
    def __init__(self, name: str, precision: str, x: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.obj = objectives.create(models.create(name), {"name": "jepa"}).to(x.device)
        self.opt = make_optimizer(self.obj, OptimConfig(lr=1e-4, weight_decay=0.01, betas=(0.9, 0.99), eps=1e-6))
        self.bf16 = precision == "bf16-mixed"
        self.x, self.i = x, 0

    def step(self) -> float:
        t = time.perf_counter()
        b = {"signal": self.x, "seed": torch.arange(len(self.x)) + 1000 * self.i, "step_seed": self.i}
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.obj(b)
        out["loss"].backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.obj.on_step_end(self.i, 1000)
        self.i += 1
        if self.x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="vit1d_xs,vit1d_s")
    ap.add_argument("--precisions", default="32-true,bf16-mixed")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--cudnn-attention", action="store_true", help="CUDA: leave cuDNN attention on (torch's default)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ecg_train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = real_batch(args.batch).to(args.device)
    if x.is_cuda and not args.cudnn_attention:
        cuda_attention_kernels()  # as pretrain/loop.py does
    rows = []
    for name in args.models.split(","):
        runners = {p: Runner(name, p, x) for p in args.precisions.split(",")}
        times: dict[str, list[float]] = {p: [] for p in runners}
        for k in range(args.warmup + args.steps):
            for p, r in runners.items():  # interleaved: both precisions see the same machine drift
                dt = r.step()
                if k >= args.warmup:
                    times[p].append(dt)
        for p, ts in times.items():
            med = statistics.median(ts)
            ref = REFERENCE_S_PER_STEP.get(name) if args.device == "cpu" and args.batch == 32 else None
            rows.append({"model": name, "precision": p, "batch": args.batch, "device": args.device,
                         "threads": args.threads,
                         "s_per_step_median": med, "steps_per_s": 1 / med, "samples_per_s": args.batch / med,
                         "s_per_step_all": ts, "reference_s_per_step": ref,
                         "speedup_vs_reference": (ref / med) if ref else None})
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'model':10s} {'precision':11s} {'s/step':>8s} {'samples/s':>10s} {'ref s/step':>10s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['model']:10s} {r['precision']:11s} {r['s_per_step_median']:8.3f} {r['samples_per_s']:10.1f} "
              f"{r['reference_s_per_step'] or float('nan'):10.2f} {r['speedup_vs_reference'] or float('nan'):8.2f}x")
    print(f"peak RSS: {peak_rss_mb:.0f} MB")
    gpu = {}
    if args.device.startswith("cuda"):
        gpu = {"gpu": torch.cuda.get_device_name(), "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
        print(f"{gpu['gpu']}: peak allocated {gpu['peak_gpu_mb']:.0f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "ecg_train", "torch": torch.__version__, "machine": platform.machine(),
                               "peak_rss_mb": peak_rss_mb, "cudnn_attention": args.cudnn_attention, **gpu,
                               "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
