"""Short EEG pretraining runs probed against a random encoder: EEGFormer-style VQ reconstruction and JEPA.

For each (objective, data) pair: ``python -m pretrain eeg [--data DIR] --objective NAME`` with the same encoder,
steps, batch and one CPU thread, then ``evaluate`` with ``data.probe_data`` set to the real recordings
(``../shared/data/signals``): the two real-data probes (rest vs movement on the motor-imagery run, recording identity
on one channel), k-NN and logistic balanced accuracy, for the pretrained encoder and for a
randomly initialised one of the same architecture; plus wall time, the final codebook perplexity / usage of the
VQ objective (logged per step to metrics.csv) and held-out RankMe.

    python benchmarks/eeg_probes.py [--steps 300] [--objectives vq_reconstruction,jepa] [--data sim,real]
                                    [--seeds 0,1,2] [--set KEY=VALUE ...]
    python benchmarks/eeg_probes.py --rows-from A.json,B.json   # one table of earlier invocations (run in parallel)

``sim`` is the embedded simulated corpus (``modalities/eeg/simulate.py``), ``real`` the bundled recordings in
``../shared/data/signals/eeg``. With several seeds (``train.seed``: initial weights, data order and masks; the
random control changes with it) a second table gives the mean over seeds and on how many seeds the pretrained
encoder scored higher, equal or lower. A last table scores the same probes on log band power per channel (no
encoder): what spectral features alone reach on these windows. Prints the tables and writes
benchmarks/results/eeg_probes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import modalities
from modalities.eeg.probes import band_power_features, probe_targets
from pretrain import config as C
from pretrain.evaluate import evaluate_run, probe_encoders, set_knn_vote
from pretrain.loop import read_metrics, train

REPO = Path(__file__).resolve().parents[1]
SIGNALS = REPO / ".." / "shared" / "data" / "signals"  # --probe-data of every run: the real-recording probes
REAL = SIGNALS / "eeg"


def run_one(objective: str, data: str, steps: int, batch: int, model: str, lr: float, out: Path,
            sets: list[str] = (), seed: int = 0) -> dict:
    recipe = modalities.get("eeg").recipe
    overrides = [f"objective.name={objective}", f"model.name={model}", f"optim.lr={lr}",
                 f"optim.warmup_steps={max(1, steps // 10)}", f"train.rankme_every={max(1, steps // 3)}",
                 f"train.ckpt_every={steps}", "train.log_every=10", "train.num_workers=0", "train.threads=1",
                 f"train.seed={seed}", *sets]
    extra = {"train": {"max_steps": steps, "batch_size": batch}, "data": {"probe_data": str(SIGNALS.resolve())}}
    if data == "real":
        extra["data"]["path"] = str(REAL.resolve())
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
            "seed": seed, "overrides": list(sets),
            "seconds": seconds, "loss_first": metrics[0]["loss"], "loss_last": last["loss"],
            "perplexity_last": last.get("perplexity"), "codebook_usage_last": last.get("codebook_usage"),
            "rankme_heldout_last": ranks[-1] if ranks else None, "probes": probes}


class BandPower(torch.nn.Module):
    """Log band power per channel (``modalities.eeg.probes.band_power_features``) as a probe "encoder"."""

    def __init__(self, fs: float) -> None:
        super().__init__()
        self.fs = fs

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(band_power_features(x.numpy(), self.fs))


def band_power_reference() -> list[dict]:
    """The probes scored on hand-made features instead of an encoder: log power of each channel in the five
    classical bands, through ``pretrain.evaluate.probe_encoders`` on the recipe's probe sets (same windows, folds
    and kNN vote as the encoders' rows). It shows how much of each task the windows hold for spectral features."""
    extra = {"data": {"probe_data": str(SIGNALS.resolve())}}
    data_cfg = dict(C.resolve(modalities.get("eeg").recipe, None, [], extra).data)
    probes = probe_targets(data_cfg, None)
    set_knn_vote(probes, data_cfg.get("probe_knn_vote"))
    bands = BandPower(float(data_cfg["fs"]))
    return probe_encoders({"log band power (delta, theta, alpha, beta, gamma) per channel": bands}, probes)


def print_rows(rows: list[dict]) -> None:
    print(f"{'objective':18s} {'data':4s} {'seed':>4s} {'steps':>5s} {'sec':>5s} {'perplex':>7s} | {'probe':15s} "
          f"{'kNN pre/rand':>13s} {'logreg pre/rand':>15s}")
    for r in rows:
        by = {(p["probe"], p["encoder"]): p for p in r["probes"]}
        ppl = f"{r['perplexity_last']:7.1f}" if r["perplexity_last"] is not None else f"{'-':>7s}"
        for probe in sorted({p["probe"] for p in r["probes"]}):
            pre, rnd = by[(probe, "pretrained")], by[(probe, "random init")]
            print(f"{r['objective']:18s} {r['data']:4s} {r.get('seed', 0):4d} {r['steps']:5d} {r['seconds']:5.0f} "
                  f"{ppl} | {probe:15s} {pre['knn_bacc']:6.3f}/{rnd['knn_bacc']:5.3f} "
                  f"{pre['linear_bacc']:8.3f}/{rnd['linear_bacc']:5.3f}")


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per (objective, data, steps, overrides) and probe: mean balanced accuracy over seeds of the pretrained and
    the random encoder, and the seeds on which the pretrained one scored higher / equal / lower."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["objective"], r["data"], r["steps"], tuple(r.get("overrides", ())))
        groups.setdefault(key, []).append(r)
    out = []
    for (objective, data, steps, overrides), runs in groups.items():
        for probe in sorted({p["probe"] for p in runs[0]["probes"]}):
            entry = {"objective": objective, "data": data, "steps": steps, "overrides": list(overrides),
                     "probe": probe, "seeds": [r.get("seed", 0) for r in runs]}
            for metric in ("knn_bacc", "linear_bacc"):
                pairs = []
                for r in runs:
                    by = {p["encoder"]: p[metric] for p in r["probes"] if p["probe"] == probe}
                    pairs.append((by["pretrained"], by["random init"]))
                entry[metric] = {"pretrained_mean": statistics.fmean(a for a, _ in pairs),
                                 "random_mean": statistics.fmean(b for _, b in pairs),
                                 "higher_equal_lower": [sum(a > b for a, b in pairs), sum(a == b for a, b in pairs),
                                                        sum(a < b for a, b in pairs)]}
            out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", default="eegformer_xs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--objectives", default="vq_reconstruction,jepa")
    ap.add_argument("--data", default="sim,real", help="comma list of 'sim' (embedded default) and 'real'")
    ap.add_argument("--seeds", default="0", help="comma list of train.seed values; every run is repeated per seed")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every run, e.g. model.patch_init=fan_in")
    ap.add_argument("--rows-from", help="comma list of JSON files written by this script: tabulate their rows")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eeg_probes.json"))
    args = ap.parse_args()
    os.environ.setdefault("MODALITIES_CACHE", str(Path(tempfile.gettempdir()) / "modalities-bench-cache"))
    rows = []
    if args.rows_from:
        for f in args.rows_from.split(","):
            rows += json.loads(Path(f).read_text())["rows"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in (int(s) for s in args.seeds.split(",")):
                for data in args.data.split(","):
                    for objective in args.objectives.split(","):
                        rows.append(run_one(objective, data, args.steps, args.batch, args.model, args.lr,
                                            Path(tmp) / f"{data}-{objective}-{seed}", args.sets, seed))
    print_rows(rows)
    summary = seed_summary(rows)
    if any(len(e["seeds"]) > 1 for e in summary):
        print(f"\n{'objective':18s} {'data':4s} {'steps':>5s} {'seeds':>5s} | {'probe':15s} "
              f"{'kNN pre/rand (+=-)':>24s} {'logreg pre/rand (+=-)':>24s}")
        for e in summary:
            cells = [f"{e[m]['pretrained_mean']:.3f}/{e[m]['random_mean']:.3f} "
                     f"({'/'.join(str(n) for n in e[m]['higher_equal_lower'])})" for m in ("knn_bacc", "linear_bacc")]
            print(f"{e['objective']:18s} {e['data']:4s} {e['steps']:5d} {len(e['seeds']):5d} | {e['probe']:15s} "
                  f"{cells[0]:>24s} {cells[1]:>24s}")
    reference = band_power_reference()
    print("\nreference: the same probes on log band power, no encoder")
    for r in reference:
        print(f"{r['probe']:15s} kNN {r['knn_bacc']:.3f}  logreg {r['linear_bacc']:.3f}  ({r['encoder']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "eeg_probes", "rows": rows, "seed_summary": summary,
                               "band_power_reference": reference}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
