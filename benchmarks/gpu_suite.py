"""Every modality's training step on one GPU in bf16: samples/s, peak memory, FLOPs and MFU (issue 24, item 4).

For each modality (``modalities.names()``) the suite builds what ``pretrain/loop.py`` builds from the modality's
recipe: the embedded default data (no network), the training dataset with the objective's views, the encoder and
objective, AdamW over the loop's parameter groups; one batch of the recipe's size (``--batch`` overrides) is collated
from keyed samples as the loop's sampler keys them, moved to the device, and stepped ``--steps`` times after
``--warmup`` steps: forward under bf16 autocast, backward, optimiser step, ``on_step_end``. Each step is timed between
``torch.cuda.synchronize`` calls; the FLOPs of one step are counted with ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions, attention; sparse convolutions are not counted), and MFU = FLOP/s / ``--peak-tflops``
(H100 SXM dense bf16: 989). ``ECG_JEPA_REFERENCE=DIR`` (a kweimann/ECG-JEPA checkout) adds the reference's ViT-XS step
on our ECG batch, bf16 autocast and its SDPA kernels, as its ``pretrain.py`` runs on CUDA.

A modality that cannot run (e.g. spconv without a CUDA build) prints one line and the suite goes on.

    bash benchmarks/gpu_suite.sh                                  # on a lent GPU: JSON to $OUT or benchmarks/results
    python benchmarks/gpu_suite.py --device cpu --steps 1 --quick # dry run on a CPU (batch 2, fp32 without bf16 units)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import models  # noqa: E402
import modalities  # noqa: E402
from pretrain import config as config_mod  # noqa: E402
from pretrain import loop, objectives  # noqa: E402
from reference_speed import count_flops, cpu_has_bf16, ecg_jepa_reference  # noqa: E402

ORDER = ("ecg", "eeg", "ppg", "sar", "ct", "lidar", "scenes", "molecules")  # molecules featurise the most at start
TRANSFORMERS = ("vit", "transformer", "eegformer", "grover")


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "to"):  # torch_geometric Batch
        return batch.to(device)
    return batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class ModalityStep:
    """The loop's objects for one modality, built from its recipe, and one timed training step."""

    def __init__(self, name: str, device: torch.device, batch: int | None, bf16: bool) -> None:
        modality = modalities.get(name)
        cfg = config_mod.resolve(modality.recipe)
        obj_cls = objectives.get(cfg.objective["name"])
        data_cfg = loop.prepare_data(cfg, modality)
        train_ds = modality.build_dataset(data_cfg, "train", obj_cls.views)
        torch.manual_seed(0)
        encoder = models.create(**cfg.model)
        self.objective = objectives.create(encoder, cfg.objective)
        self.objective.bind_dataset(train_ds)
        self.objective.to(device)
        o = cfg.optim
        self.opt = loop.make_optimizer(self.objective, o, cfg.train.strategy)
        self.b = batch or cfg.train.batch_size
        keyed = loop.KeyedDataset(train_ds)
        samples = [keyed[(i % len(keyed), loop.sample_seed(cfg.train.seed, i))] for i in range(self.b)]
        self.batch = to_device(modality.collate(samples), device)
        self.device, self.bf16, self.i = device, bf16, 0
        self.model_name = cfg.model["name"]
        self.objective_name = obj_cls.name
        self.params = sum(p.numel() for p in encoder.parameters())

    def step(self) -> float:
        sync(self.device)
        t = time.perf_counter()
        if isinstance(self.batch, dict):
            self.batch["step_seed"] = self.i
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.objective(self.batch)
        out["loss"].backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.objective.on_step_end(self.i, 1000)
        self.i += 1
        sync(self.device)
        return time.perf_counter() - t


def measure(label: str, step: Any, batch: int, steps: int, warmup: int, device: torch.device,
            peak_tflops: float, transformer: bool) -> dict:
    flops = count_flops(step)  # also the first warm-up step
    for _ in range(max(0, warmup - 1)):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(steps)]
    med = statistics.median(times)
    row = {"work": label, "batch": batch, "s_per_step": med, "s_per_step_all": times, "samples_per_s": batch / med,
           "gflop_per_step": flops / 1e9, "tflops": flops / med / 1e12, "transformer": transformer}
    row["mfu"] = row["tflops"] / peak_tflops if device.type == "cuda" else None
    if device.type == "cuda":
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def reference_row(root: Path, ecg: ModalityStep | None, args: argparse.Namespace, device: torch.device,
                  bf16: bool) -> dict:
    """The reference ECG-JEPA ViT-XS step on our ECG batch (its masks, its SDPA kernels on CUDA)."""
    tic = time.perf_counter()
    try:
        if ecg is None:
            raise RuntimeError("our ECG batch could not be built")
        x = ecg.batch["signal"]
        ref_step, _ = ecg_jepa_reference(root, "xs", x, bf16=bf16)
        row = measure(f"ecg: reference ECG-JEPA ViT-XS (kweimann), batch {x.shape[0]} x {x.shape[1]} x "
                      f"{x.shape[2]}", ref_step, x.shape[0], args.steps, args.warmup, device, args.peak_tflops, True)
    except Exception as e:
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        print(f"reference ECG-JEPA: cannot run: {msg}", flush=True)
        row = {"work": "ecg: reference ECG-JEPA ViT-XS", "error": msg}
    row["wall_s"] = time.perf_counter() - tic
    return row


def save(out: Path, rows: list[dict], meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "rows": rows}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--modalities", default=",".join([m for m in ORDER if m in modalities.names()]
                                                    + [m for m in modalities.names() if m not in ORDER]),
                   help="comma-separated (default: all, cheapest to build first)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, help="batch of every modality (default: its recipe's)")
    p.add_argument("--quick", action="store_true", help="batch 2 everywhere (a dry run)")
    p.add_argument("--precision", choices=("bf16-mixed", "32-true"),
                   help="default bf16-mixed on CUDA or a CPU with bf16 units, else 32-true")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    p.add_argument("--ecg-jepa-reference", default=os.environ.get("ECG_JEPA_REFERENCE"),
                   help="kweimann/ECG-JEPA checkout (default: $ECG_JEPA_REFERENCE); adds its ViT-XS step")
    p.add_argument("--out", type=Path, help="JSON path (default: $OUT/gpu_suite.json or benchmarks/results/)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpu_suite: no CUDA device (use --device cpu for a dry run)")
        loop.cuda_attention_kernels()  # as pretrain/loop.py does
        torch.backends.cuda.matmul.allow_tf32 = True
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" or cpu_has_bf16() else "32-true")
    bf16 = precision == "bf16-mixed"
    batch = 2 if args.quick else args.batch
    out = args.out or (Path(os.environ["OUT"]) / "gpu_suite.json" if os.environ.get("OUT")
                       else REPO / "benchmarks" / "results" / "gpu_suite.json")
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    meta = {"benchmark": "gpu_suite", "device": gpu, "torch": torch.__version__, "precision": precision,
            "steps": args.steps, "warmup": args.warmup, "peak_tflops": args.peak_tflops, "command": " ".join(sys.argv)}
    rows: list[dict] = []
    ecg: ModalityStep | None = None
    for name in args.modalities.split(","):
        tic = time.perf_counter()
        try:
            ms = ModalityStep(name, device, batch, bf16)
            built = time.perf_counter() - tic
            transformer = any(t in ms.model_name for t in TRANSFORMERS)
            row = measure(f"{name}: {ms.objective_name} on {ms.model_name}", ms.step, ms.b, args.steps, args.warmup,
                          device, args.peak_tflops, transformer)
            row.update(modality=name, model=ms.model_name, objective=ms.objective_name, encoder_params=ms.params,
                       build_s=built)
            if name == "ecg":
                ecg = ms
        except Exception as e:  # one modality that cannot run here (spconv without CUDA kernels, ...) is one line
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            print(f"{name}: cannot run: {msg}", flush=True)
            row = {"work": name, "modality": name, "error": msg}
        row["wall_s"] = time.perf_counter() - tic
        rows.append(row)
        save(out, rows, meta)  # after every modality: a run cut short by the time limit keeps what it measured
        if "error" not in row:
            print(f"{row['work']}: {row['samples_per_s']:.1f} samples/s (data and model {row['build_s']:.0f} s, "
                  f"all {row['wall_s']:.0f} s)", flush=True)
        if name == "ecg" and args.ecg_jepa_reference:  # right after ours: a run cut short still has the pair
            rows.append(reference_row(Path(args.ecg_jepa_reference), ecg, args, device, bf16))
            save(out, rows, meta)
            ecg = None
        ms = None  # free this modality's model and batch
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\n{gpu}, {precision}, {args.steps} steps after {args.warmup} warm-up, MFU against "
          f"{args.peak_tflops:.0f} TFLOP/s\n")
    print("| work | batch | s/step | samples/s | peak GB | GFLOP/step | TFLOP/s | MFU |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['work']} | cannot run: {r['error']} |")
            continue
        mem = f"{r['peak_gpu_gb']:.2f}" if "peak_gpu_gb" in r else "-"
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None and r["transformer"] else "-"
        print(f"| {r['work']} | {r['batch']} | {r['s_per_step']:.4f} | {r['samples_per_s']:.1f} | {mem} | "
              f"{r['gflop_per_step']:.1f} | {r['tflops']:.2f} | {mfu} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
