"""Pretrained vs scratch fine-tuning at three label fractions x 3 seeds on the real labelled data of ../shared/data:
ECG beats (MIT-BIH 100, N vs A), EEG motor imagery (rest T0 vs movement T1+T2) and SemanticKITTI per-point classes.

Each case is one short pretraining run and one ``python -m pretrain finetune`` call (the commands below, also in
the JSON); the script prints the report tables side by side and writes
``benchmarks/results/finetune_label_fractions.json``. ``--collect`` reads finished ``--out`` folders instead of
running (the figures of the session-4 note were collected this way from the same commands; the ECG fractions ran
as two calls, 0.1,0.3 and 1.0, whose rows were merged into one folder).

    OMP_NUM_THREADS=1 python benchmarks/finetune_label_fractions.py [--cases ecg eeg lidar] [--work runs/ft_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIG = (REPO / ".." / "shared" / "data" / "signals").resolve()
KITTI = (REPO / ".." / "shared" / "data" / "3d" / "semantickitti").resolve()


def cases(work: Path) -> dict[str, dict[str, list[str]]]:
    pre = {k: work / k / "pretrain" for k in ("ecg", "eeg", "lidar")}
    ft = {k: work / k / "finetune" for k in ("ecg", "eeg", "lidar")}
    return {
        "ecg": {"pretrain": ["ecg", "--data", str(SIG), "--out", str(pre["ecg"]), "--max-steps", "300",
                             "--precision", "bf16-mixed", "--set", "train.batch_size=32", "--set", "optim.lr=5e-4",
                             "--set", "optim.warmup_steps=30", "--set", "train.threads=1", "--set",
                             "train.num_workers=0", "--no-eval"],
                "finetune": ["finetune", str(pre["ecg"]), "--data", str(SIG / "mitdb"), "--labels", "events",
                             "--target", "N", "--target", "A", "--set", "data.window_s=2.5", "--set",
                             "data.split_fractions=[0.5,0.2,0.3]", "--set", "train.threads=1", "--set",
                             "train.max_steps=100", "--set", "optim.warmup_steps=10", "--label-fractions",
                             "0.1,0.3,1.0", "--seeds", "3", "--mode", "full,scratch", "--out", str(ft["ecg"])]},
        "eeg": {"pretrain": ["eeg", "--data", str(SIG / "eeg"), "--out", str(pre["eeg"]), "--set",
                             "model.name=eegformer_xs", "--max-steps", "300", "--batch-size", "32", "--set",
                             "optim.lr=1e-3", "--set", "optim.warmup_steps=20", "--set", "train.threads=1", "--set",
                             "train.num_workers=0", "--no-eval"],
                "finetune": ["finetune", str(pre["eeg"]), "--data",
                             str(SIG / "eeg" / "test_edf_overlapping_annotations.edf"), "--labels", "events",
                             "--target", "T0", "--target", "T1+T2", "--set", "data.event_stride_s=1.25", "--set",
                             "data.split_fractions=[0.6,0.1,0.3]", "--set", "objective.class_weight=balanced",
                             "--label-fractions", "0.2,0.5,1.0", "--seeds", "3", "--mode", "full,scratch",
                             "--out", str(ft["eeg"])]},
        "lidar": {"pretrain": ["lidar", "--out", str(pre["lidar"]), "--no-eval"],  # the embedded street simulator
                  "finetune": ["finetune", str(pre["lidar"]), "--data", str(KITTI), "--labels", "points", "--set",
                               "data.label_unit=points", "--label-fractions", "0.01,0.1,1.0", "--seeds", "3",
                               "--mode", "full,scratch", "--out", str(ft["lidar"])]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=["ecg", "eeg", "lidar"])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "ft_bench")
    ap.add_argument("--collect", nargs="*", metavar="CASE=FINETUNE_DIR", default=None,
                    help="read finished fine-tuning folders instead of running")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune_label_fractions.json")
    args = ap.parse_args()
    plan = cases(args.work)
    result: dict = {"load_start": os.getloadavg(), "cases": {}}
    done = dict(c.split("=", 1) for c in args.collect) if args.collect is not None else {}
    for name in args.cases:
        entry: dict = {"commands": [" ".join(["python -m pretrain", *plan[name][k]]) for k in ("pretrain", "finetune")]}
        if name in done:
            folder = Path(done[name])
        else:
            tic = time.perf_counter()
            for k in ("pretrain", "finetune"):
                subprocess.run([sys.executable, "-m", "pretrain", *plan[name][k], "--quiet"], check=True, cwd=REPO)
            entry["seconds"] = time.perf_counter() - tic
            folder = Path(plan[name]["finetune"][plan[name]["finetune"].index("--out") + 1])
        entry["folder"] = str(folder)
        entry["summary"] = json.loads((folder / "summary.json").read_text())
        report = (folder / "report.md").read_text().splitlines()
        entry["table"] = [line for line in report if line.startswith("|")]
        result["cases"][name] = entry
        print(f"\n## {name}\n" + "\n".join(entry["table"]))
    result["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
