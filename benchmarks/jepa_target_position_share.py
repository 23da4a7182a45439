"""How much of the JEPA targets a predictor could get from token positions alone.

JEPA regresses LayerNorm-ed teacher features of masked tokens, and the predictor is told each target's position.
If the targets are mostly a function of position (shared by every sample), the loss can fall without the encoder
reading the signal. For each encoder this prints:

- the share of the target energy explained by the per-position mean over samples:
  ``sum_n ||mean_b t[b, n]||^2 * B / sum ||t||^2`` (1.0 = targets are position only);
- the L1 loss of the position-only predictor ``t[b, n] ~ mean_b t[b, n]`` (compare with the training loss).

    python benchmarks/jepa_target_position_share.py [--encoder RUN_DIR/encoder ...] [--windows 64]
    python benchmarks/jepa_target_position_share.py --per-record [--windows 32]

``--per-record``: the share for each record's windows alone, for the paper's patch initialisation, for
``fan_in`` and for the paper's initialisation with ``patch_norm`` (each token's content LayerNorm-ed), beside
the number of leads the record fills (the 12-lead layout leaves missing leads at zero, so a 2-lead record feeds
the patch embedding a sixth of a 12-lead record's input energy).

Uses real 10 s windows of the shared ECG records; writes benchmarks/results/jepa_target_position_share.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import models
from modalities.ecg import build_dataset
from models.transformer import PATCH_INITS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def position_share(encoder: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        t = F.layer_norm(encoder(x), (encoder.embed_dim,)).double()
    pos_mean = t.mean(0, keepdim=True)
    share = float((pos_mean ** 2).sum() * t.shape[0] / (t ** 2).sum())
    return share, float((t - pos_mean).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", action="append", default=[], help="a saved encoder folder (repeatable)")
    ap.add_argument("--model", default="vit1d_xs", help="architecture of the random-init reference")
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "signals"))
    ap.add_argument("--per-record", action="store_true", help="one row per record and patch initialisation")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/jepa_target_position_share"
                                                "[_per_record].json)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = build_dataset({"path": str(Path(args.data).resolve()), "fs": 500, "window_s": 10.0}, "train", 0)
    if args.per_record:
        per_record(ds, args.model, args.windows, Path(args.out or RESULTS / "jepa_target_position_share_per_record.json"))
        return
    x = torch.stack([ds[(i, 7000 + i)]["signal"] for i in range(args.windows)])
    torch.manual_seed(0)
    encoders = {f"{args.model} random init": models.create(args.model).eval()}
    for e in args.encoder:
        encoders[e] = models.load_pretrained(e)
    rows = []
    print(f"{'encoder':60s} {'position share':>14s} {'position-only L1':>17s}")
    for name, enc in encoders.items():
        share, l1 = position_share(enc, x)
        rows.append({"encoder": name, "position_share": share, "position_only_l1": l1})
        print(f"{name:60s} {share:14.3f} {l1:17.3f}")
    out = Path(args.out or RESULTS / "jepa_target_position_share.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "jepa_target_position_share", "windows": args.windows, "rows": rows}, indent=2))
    print(f"wrote {out}")


def per_record(ds, model: str, windows: int, out: Path) -> None:
    """Position share of each record's first ``windows`` seeded windows, for both patch initialisations."""
    by_record: dict[str, list[torch.Tensor]] = {}
    for i in range(len(ds)):
        item = ds[(i, 7000 + i)]
        by_record.setdefault(item["record"], []).append(item["signal"])
    variants = {init: {"patch_init": init} for init in PATCH_INITS} | {"patch_norm": {"patch_norm": True}}
    encoders = {}
    for name, kwargs in variants.items():
        torch.manual_seed(0)
        encoders[name] = models.create(model, **kwargs).eval()
    rows = []
    print(f"{'record':24s} {'windows':>7s} {'leads':>5s}" + "".join(f" {'share (' + v + ')':>20s}" for v in variants))
    for record, signals in by_record.items():
        x = torch.stack(signals[:windows])
        leads = int((x.abs().sum(-1) > 0).any(0).sum())
        shares = {name: position_share(enc, x)[0] for name, enc in encoders.items()}
        rows.append({"record": Path(record).name, "windows": len(x), "leads_present": leads,
                     "position_share": shares})
        print(f"{Path(record).name:24s} {len(x):7d} {leads:5d}" + "".join(f" {v:20.3f}" for v in shares.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "jepa_target_position_share_per_record", "model": model,
                               "windows_per_record": windows, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
