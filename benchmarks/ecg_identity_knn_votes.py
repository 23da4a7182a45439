"""ECG record identity under each kNN rule, pretrained vs random, for finished runs.

The identity probe's classes are unequal (the 38 s PTB record gives 27 windows, the others 120 each). This shows
how the kNN vote decides the pretrained-vs-random comparison. For every run folder, on the default identity probe
(cross-validated over thirds of each record), it scores the run's encoder and its random control (the run's own
initial weights) with:

- ``1nn``: the nearest training window, no vote (the probe's kNN, ``modalities.ecg.probes.IDENTITY_KNN_K``);
- ``plain5``: majority of the 5 nearest;
- ``balanced5``: 5 nearest, each voting 1 / (its record's training windows) (the library's default vote, and the
  identity kNN of results before this script);
- ``undersampled5``: plain 5-NN within a class-balanced draw of the training windows (every record drawn down to
  the smallest one's count), balanced accuracy averaged over 20 draws;

and counts the ``balanced5`` errors that are windows called PTB; beside them, the logistic probe's balanced
accuracy (same folds) and the RankMe of the probe windows' embeddings, as ``evaluate`` reports them.

    python benchmarks/ecg_identity_knn_votes.py RUN_DIR [RUN_DIR ...] [--out FILE]

Prints one table and writes benchmarks/results/ecg_identity_knn_votes.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import models
import modalities
from pretrain.config import load_run_config
from pretrain.evaluate import (balanced_accuracy, blocked_cv_predictions, control_encoder, embed_array, knn_predict,
                               rankme)

REPO = Path(__file__).resolve().parents[1]
# The real records the identity probe reads (runs that set data.probe_data use theirs).
SIGNALS = REPO / ".." / "shared" / "data" / "signals"
RULES = {"1nn": (1, "plain"), "plain5": (5, "plain"), "balanced5": (5, "balanced"), "undersampled5": (5, "draws")}
DRAWS = 20
SHORT_RECORD = "ptbdb/s0010_re"


def drawn_cv_predict(z: np.ndarray, y: np.ndarray, folds: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Every window predicted by a plain k-NN over a class-balanced draw of the other folds' windows (each class
    drawn down, without replacement, to the smallest class's count there)."""
    pred = np.empty_like(y)
    for b in np.unique(folds):
        test = folds == b
        train = np.flatnonzero(~test)
        n = np.bincount(y[train]).min()
        train = np.concatenate([rng.choice(train[y[train] == c], n, replace=False) for c in np.unique(y[train])])
        pred[test] = knn_predict(z[train], y[train], z[test], k, "plain")
    return pred


def score_run(run: Path, probes: dict[str, object]) -> dict:
    cfg = load_run_config(run / "config.yaml")
    data_cfg = dict(cfg.data)
    key = json.dumps({k: data_cfg.get(k) for k in ("fs", "leads", "band", "clip", "probe_window_s", "probe_data")},
                     sort_keys=True)
    if key not in probes:
        data_cfg["probe_data"] = data_cfg.get("probe_data") or str(SIGNALS.resolve())
        probes[key] = modalities.get("ecg").probe_targets(data_cfg, None)["record_identity"]
    ps = probes[key]
    y, folds = np.asarray(ps.y_train), np.asarray(ps.folds)
    short = ps.class_names.index(SHORT_RECORD)
    row = {"run": str(run), "steps": cfg.train.max_steps, "batch": cfg.train.batch_size, "seed": cfg.train.seed,
           "lr": cfg.optim.lr, "model_options": dict(cfg.model), "ema": list(cfg.objective.get("ema", []))}
    for name, enc in (("pretrained", models.load_pretrained(run / "encoder")), ("random init", control_encoder(run))):
        z = embed_array(enc.eval().embed, ps.x_train)
        scores = {}
        for rule, (k, vote) in RULES.items():
            if vote == "draws":
                rng = np.random.default_rng(0)
                scores[rule] = float(np.mean([balanced_accuracy(y, drawn_cv_predict(z, y, folds, k, rng))
                                              for _ in range(DRAWS)]))
                continue
            pred = blocked_cv_predictions(z, y, folds, k, vote)
            scores[rule] = balanced_accuracy(y, pred["knn"])
            scores["logistic"] = balanced_accuracy(y, pred["linear"])  # the same for every rule
            if rule == "balanced5":
                wrong = pred["knn"] != y
                scores["balanced5_errors"] = int(wrong.sum())
                scores["balanced5_errors_called_ptb"] = int((wrong & (pred["knn"] == short)).sum())
        scores["rankme"] = rankme(torch.from_numpy(z))
        row[name] = scores
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ecg_identity_knn_votes.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    probes: dict[str, object] = {}
    rows = []
    print(f"{'run':34s} " + " ".join(f"{r:>13s}" for r in RULES) + f" {'bal. errors->PTB':>17s}"
          f" {'logistic':>13s} {'RankMe':>11s}")
    for run in args.runs:
        row = score_run(run, probes)
        rows.append(row)
        pre, rnd = row["pretrained"], row["random init"]
        print(f"{'/'.join(run.parts[-2:]):34s} " + " ".join(f"{pre[r]:6.3f}/{rnd[r]:5.3f}" for r in RULES)
              + f" {pre['balanced5_errors_called_ptb']:3d}/{pre['balanced5_errors']:<3d} "
                f"{rnd['balanced5_errors_called_ptb']:3d}/{rnd['balanced5_errors']:<3d} "
                f"{pre['logistic']:6.3f}/{rnd['logistic']:5.3f} {pre['rankme']:5.2f}/{rnd['rankme']:5.2f}", flush=True)
    print("\nruns of the same settings (seeds pooled): mean pretrained / random, and seeds where pretrained is above")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        opts = {k: v for k, v in row["model_options"].items() if k != "name"}
        key = f"{row['steps']}x{row['batch']} lr {row['lr']:g} {opts or 'paper init'} ema {row['ema']}"
        groups.setdefault(key, []).append(row)
    for key, members in groups.items():
        cells = []
        for r in [*RULES, "logistic", "rankme"]:
            pre = np.mean([m["pretrained"][r] for m in members])
            rnd = np.mean([m["random init"][r] for m in members])
            wins = sum(m["pretrained"][r] > m["random init"][r] for m in members)
            cells.append(f"{r} {pre:.3f}/{rnd:.3f} ({wins}/{len(members)})")
        print(f"{key}: " + ", ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "ecg_identity_knn_votes", "rules": {r: {"k": k, "vote": v}
                                    for r, (k, v) in RULES.items()}, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
