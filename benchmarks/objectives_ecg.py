"""Short real pretraining of each shared objective on the shared ECG records, probed against a random encoder.

For every objective: ``python -m pretrain ecg --data ../shared/data/signals --objective NAME`` with the same
encoder (ViT-XS), steps, batch and precision, then ``evaluate``: RankMe of the held-out batch and the two probes
(record identity on one lead, MIT-BIH beat class N vs A), k-NN and logistic balanced accuracy, for the pretrained
encoder and for a randomly initialised one of the same architecture.

    python benchmarks/objectives_ecg.py [--steps 300] [--objectives jepa,barlow_twins,vicreg,infonce]
    python benchmarks/objectives_ecg.py --from-run RUN_DIR [--from-run ...] --out FILE   # tabulate finished runs
    python benchmarks/objectives_ecg.py --rows-from A.json --rows-from B.json --out C.json  # one table of earlier results

Prints one table and writes benchmarks/results/ecg_objectives.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import modalities
from pretrain import config as C
from pretrain.evaluate import evaluate_run
from pretrain.loop import read_metrics, train

REPO = Path(__file__).resolve().parents[1]


def run_one(name: str, steps: int, batch: int, precision: str, lr: float, out: Path, data: Path,
            sets: list[str]) -> dict:
    recipe = modalities.get("ecg").recipe
    overrides = [f"objective.name={name}", f"optim.lr={lr}", f"optim.warmup_steps={max(1, steps // 10)}",
                 "train.rankme_every=50", f"train.ckpt_every={steps}", "train.log_every=10", "train.num_workers=0"]
    overrides += [s for s in sets if s.startswith(f"{name}:")] and [s.split(":", 1)[1] for s in sets if s.startswith(f"{name}:")]
    extra = {"data": {"path": str(data)}, "train": {"max_steps": steps, "batch_size": batch, "precision": precision}}
    cfg = C.resolve(recipe, None, overrides, extra)
    t = time.perf_counter()
    train(cfg, out, progress=False)
    seconds = time.perf_counter() - t
    evaluate_run(out)
    return summarise(out, seconds)


def summarise(out: Path, seconds: float | None = None) -> dict:
    """The table row of a trained run folder (evaluated here if it has no probes.json). Without ``seconds`` the
    training wall time is read off the folder: config.yaml is written at the start, the encoder at the end."""
    from pretrain.config import load_run_config

    cfg = load_run_config(out / "config.yaml")
    if seconds is None:
        seconds = (out / "encoder" / "model.safetensors").stat().st_mtime - (out / "config.yaml").stat().st_mtime
    if not (out / "probes.json").is_file():
        evaluate_run(out)
    metrics = read_metrics(out)
    ranks = [r["rankme"] for r in metrics if "rankme" in r]
    return {"objective": cfg.objective["name"], "steps": cfg.train.max_steps, "batch": cfg.train.batch_size,
            "precision": cfg.train.precision, "lr": cfg.optim.lr, "warmup_steps": cfg.optim.warmup_steps,
            "seed": cfg.train.seed, "model": cfg.model.get("name"), "model_options": dict(cfg.model),
            "objective_options": dict(cfg.objective), "seconds": seconds, "loss_first": metrics[0]["loss"],
            "loss_last": metrics[-1]["loss"],
            "rankme_heldout_first": ranks[0], "rankme_heldout_last": ranks[-1],
            "probes": json.loads((out / "probes.json").read_text())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--objectives", default="jepa,barlow_twins,vicreg,infonce")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="OBJECTIVE:KEY=VALUE",
                    help="an override for one objective's run, e.g. jepa:objective.ema=[0.99,0.999]")
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "signals"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ecg_objectives.json"))
    ap.add_argument("--from-run", action="append", default=[], metavar="RUN_DIR",
                    help="tabulate a finished `python -m pretrain ecg` run instead of training (repeatable)")
    ap.add_argument("--rows-from", action="append", default=[], metavar="JSON",
                    help="tabulate the rows of an earlier result file instead of training (repeatable)")
    args = ap.parse_args()
    rows = [r for f in args.rows_from for r in json.loads(Path(f).read_text())["rows"]]
    if args.from_run:
        rows += [summarise(Path(d)) for d in args.from_run]
    elif not args.rows_from:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.objectives.split(","):
                rows.append(run_one(name, args.steps, args.batch, args.precision, args.lr, Path(tmp) / name,
                                    Path(args.data).resolve(), args.sets))
    print(f"{'objective':13s} {'steps':>5s} {'sec':>6s} {'RankMe':>14s} | {'probe':16s} {'kNN pre/rand':>13s} "
          f"{'logreg pre/rand':>16s} {'RankMe pre/rand':>16s}")
    for r in rows:
        by = {(p["probe"], p["encoder"]): p for p in r["probes"]}
        for probe in sorted({p["probe"] for p in r["probes"]}):
            pre, rnd = by[(probe, "pretrained")], by[(probe, "random init")]
            print(f"{r['objective']:13s} {r['steps']:5d} {r['seconds']:6.0f} "
                  f"{r['rankme_heldout_first']:6.1f}->{r['rankme_heldout_last']:6.1f} | {probe:16s} "
                  f"{pre['knn_bacc']:6.3f}/{rnd['knn_bacc']:5.3f} {pre['linear_bacc']:8.3f}/{rnd['linear_bacc']:5.3f} "
                  f"{pre['rankme']:8.1f}/{rnd['rankme']:5.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "ecg_objectives", "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
