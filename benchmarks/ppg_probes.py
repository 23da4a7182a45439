"""Short real PPG pretraining (the wearable InfoNCE recipe on efficientnet1d), probed against a random encoder.

Trains the PPG recipe briefly on real recordings (default: the HeartPy recordings of the embedded default,
i.e. ``python -m pretrain ppg`` with the demo schedule; ``--data DIR`` for another folder) and probes the frozen
encoder and a randomly initialised encoder of the same architecture on the two real PPG probes: heart-rate
regression (kNN and ridge R^2 / MAE) and record identity (kNN and logistic balanced accuracy), on the recordings of
``--probe-data`` (default ``../shared/data/signals``: HeartPy's three and challenge2015/a103l).

    python benchmarks/ppg_probes.py [--steps 40] [--batch 16] [--lr 1e-3] [--data DIR] [--probe-data DIR]
                                     [--set KEY=VALUE ...]
    python benchmarks/ppg_probes.py --from-run RUN_DIR   # tabulate a finished run (python -m pretrain ppg ...)

Prints one table and writes benchmarks/results/ppg_probes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import modalities
from pretrain import config as C
from pretrain.evaluate import evaluate_run
from pretrain.loop import read_metrics, train

REPO = Path(__file__).resolve().parents[1]
# The real recordings of the probes (ppg_heartpy/*.csv and challenge2015/a103l), as in every earlier result.
SIGNALS = REPO / ".." / "shared" / "data" / "signals"


def run(steps: int, batch: int, lr: float, data: str | None, sets: list[str], out: Path,
        probe_data: str | None = None) -> dict:
    recipe = modalities.get("ppg").recipe
    overrides = [f"optim.lr={lr}", f"optim.warmup_steps={max(1, steps // 8)}", "train.num_workers=0",
                 f"train.rankme_every={max(1, steps // 2)}", f"train.ckpt_every={steps}", "train.log_every=5"] + sets
    extra = {"train": {"max_steps": steps, "batch_size": batch}}
    if data:
        extra["data"] = {"path": str(Path(data).resolve())}
    if probe_data:
        extra.setdefault("data", {})["probe_data"] = str(Path(probe_data).resolve())
    cfg = C.resolve(recipe, None, overrides, extra, demo=not data)
    t = time.perf_counter()
    train(cfg, out, progress=False)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_run(out)
    return summarise(out, train_s, time.perf_counter() - t, sets)


def summarise(out: Path, train_s: float | None, eval_s: float | None, sets: list[str]) -> dict:
    """The benchmark record of a trained and evaluated run folder."""
    from pretrain.config import load_run_config

    cfg = load_run_config(out / "config.yaml")
    if not (out / "probes.json").is_file():
        t = time.perf_counter()
        evaluate_run(out)
        eval_s = time.perf_counter() - t
    metrics = read_metrics(out)
    ranks = [r["rankme"] for r in metrics if "rankme" in r]
    quarter = max(1, len(metrics) // 4)
    return {
        "run": str(out), "data": cfg.data.get("path"), "steps": cfg.train.max_steps, "batch": cfg.train.batch_size,
        "lr": cfg.optim.lr, "window_s": cfg.data.get("window_s"), "overrides": sets,
        "train_seconds": None if train_s is None else round(train_s, 1),
        "eval_seconds": None if eval_s is None else round(eval_s, 1),
        "loss_first": metrics[0]["loss"], "loss_last": metrics[-1]["loss"],
        "loss_mean_first_quarter": sum(r["loss"] for r in metrics[:quarter]) / quarter,
        "loss_mean_last_quarter": sum(r["loss"] for r in metrics[-quarter:]) / quarter,
        "rankme_heldout": ranks, "probes": json.loads((out / "probes.json").read_text()),
    }


def table(result: dict) -> str:
    rows = {(p["probe"], p["encoder"]): p for p in result["probes"]}
    lines = [f"{'probe':16s} {'metric':14s} {'pretrained':>10s} {'random':>10s}"]
    for probe in dict.fromkeys(p["probe"] for p in result["probes"]):
        pre, rnd = rows[(probe, "pretrained")], rows[(probe, "random init")]
        keys = (["knn_r2", "knn_mae", "knn_within_r", "ridge_r2", "ridge_mae", "ridge_within_r"]
                if pre.get("task") == "regression"
                else ["knn_bacc", "linear_bacc"]) + ["rankme"]
        for k in (k for k in keys if k in pre):
            lines.append(f"{probe:16s} {k:14s} {pre[k]:10.3f} {rnd[k]:10.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data", default=None, help="folder of PPG records (default: the embedded heartpy data)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--probe-data", default=str(SIGNALS) if SIGNALS.is_dir() else None,
                    help="folder of the real probe recordings (default: ../shared/data/signals when present, else the "
                         "recordings of the installed heartpy package)")
    ap.add_argument("--from-run", help="tabulate this finished run folder instead of training")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ppg_probes.json"))
    args = ap.parse_args()
    if args.from_run:
        result = summarise(Path(args.from_run), None, None, [])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.steps, args.batch, args.lr, args.data, args.sets, Path(tmp) / "run", args.probe_data)
    result["machine"] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "platform": platform.platform(), "torch": torch.__version__}
    print(f"{result['data']}: {result['steps']} steps x {result['batch']}, train {result['train_seconds']} s, "
          f"eval {result['eval_seconds']} s, loss {result['loss_mean_first_quarter']:.3f} (first quarter) -> "
          f"{result['loss_mean_last_quarter']:.3f} (last quarter)")
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
