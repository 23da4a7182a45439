"""First runs on a user's own records: the full PPG and ECG recipes on two 5-minute ICU records, and one alone.

Issue 22's acceptance: ``python -m pretrain ppg|ecg --data <two 5-minute 250 Hz WFDB records with PLETH>
--max-steps 3`` with the recipes' global batch of 256 completes with a peak resident set of at most 8 GB (before,
PPG was killed by the kernel at 18-22 GB), and the micro-batch decision is shown; one such record alone with the PPG
recipe ends in one line (no negatives) instead of training on a loss of exactly 0.

The records are cut from the real ICU alarm record ``challenge2015/a103l`` (ECG II, V and PLETH at 250 Hz, 5.5 min):
its first and its last 5 minutes, written as two WFDB records (two subjects to the library). Each run is a real CLI
process under ``/usr/bin/time -v``.

    python benchmarks/user_data_fit.py --shared ../shared/data [--modalities ppg,ecg] [--steps 3]

Prints a table and writes benchmarks/results/user_data_fit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_records(shared: Path, out: Path) -> list[str]:
    import wfdb

    rec = wfdb.rdrecord(str(shared / "signals" / "challenge2015" / "a103l"))
    n = int(300 * rec.fs)
    names = []
    for name, sl in (("icu_first5min", slice(0, n)), ("icu_last5min", slice(rec.sig_len - n, rec.sig_len))):
        folder = out / "two"
        folder.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, p_signal=rec.p_signal[sl],
                    fmt=["16"] * rec.n_sig, write_dir=str(folder))
        names.append(name)
    one = out / "one"
    one.mkdir(exist_ok=True)
    for suffix in (".hea", ".dat"):
        (one / f"{names[0]}{suffix}").write_bytes((out / "two" / f"{names[0]}{suffix}").read_bytes())
    return names


def run(modality: str, data: Path, steps: int, run_dir: Path, extra: list[str]) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "pretrain", modality, "--data", str(data),
           "--max-steps", str(steps), "--out", str(run_dir), "--no-eval", "--quiet", *extra]
    env = {**os.environ, "MODALITIES_CACHE": str(run_dir.parent / "cache")}
    env.pop("MODALITIES_RUN_DIR", None)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    lines = [x for x in proc.stderr.splitlines() if x.startswith(("memory:", "warning:", "error:"))]
    return {"modality": modality, "data": data.name, "exit": proc.returncode, "wall_s": round(wall, 1),
            "peak_rss_gb": round(int(rss.group(1)) / 2**20, 2) if rss else None,
            "memory_line": next((x for x in lines if x.startswith("memory:")), None),
            "error": next((x for x in lines if x.startswith("error:")), None),
            "warnings": [x for x in lines if x.startswith("warning:")], "command": " ".join(cmd[2:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--modalities", default="ppg,ecg")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one-record", action="store_true", help="also the PPG recipe on one record alone")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "user_data_fit.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_records(Path(args.shared), root / "data")
        for m in args.modalities.split(","):
            rows.append(run(m, root / "data" / "two", args.steps, root / f"{m}_two", []))
            print(json.dumps(rows[-1]), flush=True)
        if "ppg" in args.modalities.split(",") or args.one_record:
            rows.append(run("ppg", root / "data" / "one", args.steps, root / "ppg_one", []))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'modality':9s} {'data':6s} {'exit':>4s} {'wall s':>7s} {'peak RSS GB':>11s}  decision / error")
    for r in rows:
        what = r["error"] or r["memory_line"] or ""
        print(f"{r['modality']:9s} {r['data']:6s} {r['exit']:4d} {r['wall_s']:7.1f} {r['peak_rss_gb'] or 0:11.2f}  {what}")
    out = Path(args.out)
    if out.is_file():  # keep the rows of runs not repeated now
        done = {(r["modality"], r["data"]) for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if (r["modality"], r["data"]) not in done] + rows
    out.write_text(json.dumps({"rows": rows, "note": __doc__.splitlines()[0]}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
