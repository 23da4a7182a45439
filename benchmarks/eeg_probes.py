"""Short EEG pretraining runs probed against a random encoder: EEGFormer-style VQ reconstruction and JEPA.

For each (objective, data) pair: ``python -m pretrain eeg [--data DIR] --objective NAME`` with the same encoder,
steps, batch and one CPU thread, then ``evaluate``: the two real-data probes (rest vs movement on the motor-imagery
run, recording identity on one channel), k-NN and logistic balanced accuracy, for the pretrained encoder and for a
randomly initialised one of the same architecture; plus wall time, the final codebook perplexity / usage of the
VQ objective (logged per step to metrics.csv) and held-out RankMe.

    python benchmarks/eeg_probes.py [--steps 300] [--objectives vq_reconstruction,jepa] [--data sim,real]
                                    [--set KEY=VALUE ...]

``sim`` is the embedded simulated corpus (``modalities/eeg/simulate.py``), ``real`` the bundled recordings in
``../shared/data/signals/eeg``. Prints one table and writes benchmarks/results/eeg_probes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import modalities
from pretrain import config as C
from pretrain.evaluate import evaluate_run
from pretrain.loop import read_metrics, train

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / ".." / "shared" / "data" / "signals" / "eeg"


def run_one(objective: str, data: str, steps: int, batch: int, model: str, lr: float, out: Path,
            sets: list[str] = ()) -> dict:
    recipe = modalities.get("eeg").recipe
    overrides = [f"objective.name={objective}", f"model.name={model}", f"optim.lr={lr}",
                 f"optim.warmup_steps={max(1, steps // 10)}", f"train.rankme_every={max(1, steps // 3)}",
                 f"train.ckpt_every={steps}", "train.log_every=10", "train.num_workers=0", "train.threads=1", *sets]
    extra = {"train": {"max_steps": steps, "batch_size": batch}}
    if data == "real":
        extra["data"] = {"path": str(REAL.resolve())}
    cfg = C.resolve(recipe, None, overrides, extra, demo=(data == "sim"))
    cfg.modality = "eeg"
    t = time.perf_counter()
    train(cfg, out, progress=False)
    seconds = time.perf_counter() - t
    evaluate_run(out)
    probes = json.loads((out / "probes.json").read_text())
    metrics = read_metrics(out)
    last = metrics[-1]
    ranks = [r["rankme"] for r in metrics if "rankme" in r]
    return {"objective": objective, "data": data, "model": model, "steps": steps, "batch": batch, "lr": lr,
            "overrides": list(sets),
            "seconds": seconds, "loss_first": metrics[0]["loss"], "loss_last": last["loss"],
            "perplexity_last": last.get("perplexity"), "codebook_usage_last": last.get("codebook_usage"),
            "rankme_heldout_last": ranks[-1] if ranks else None, "probes": probes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", default="eegformer_xs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--objectives", default="vq_reconstruction,jepa")
    ap.add_argument("--data", default="sim,real", help="comma list of 'sim' (embedded default) and 'real'")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every run, e.g. model.patch_init=fan_in")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eeg_probes.json"))
    args = ap.parse_args()
    os.environ.setdefault("MODALITIES_CACHE", str(Path(tempfile.gettempdir()) / "modalities-bench-cache"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data.split(","):
            for objective in args.objectives.split(","):
                rows.append(run_one(objective, data, args.steps, args.batch, args.model, args.lr,
                                    Path(tmp) / f"{data}-{objective}", args.sets))
    print(f"{'objective':18s} {'data':4s} {'steps':>5s} {'sec':>5s} {'perplex':>7s} | {'probe':15s} "
          f"{'kNN pre/rand':>13s} {'logreg pre/rand':>15s}")
    for r in rows:
        by = {(p["probe"], p["encoder"]): p for p in r["probes"]}
        ppl = f"{r['perplexity_last']:7.1f}" if r["perplexity_last"] is not None else f"{'-':>7s}"
        for probe in sorted({p["probe"] for p in r["probes"]}):
            pre, rnd = by[(probe, "pretrained")], by[(probe, "random init")]
            print(f"{r['objective']:18s} {r['data']:4s} {r['steps']:5d} {r['seconds']:5.0f} {ppl} | {probe:15s} "
                  f"{pre['knn_bacc']:6.3f}/{rnd['knn_bacc']:5.3f} {pre['linear_bacc']:8.3f}/{rnd['linear_bacc']:5.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "eeg_probes", "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
