"""LiDAR: voxelisation and sparse-UNet speed on a real KITTI sweep, and what E-SSL3D pretraining buys.

1. Voxelisation ms/scan: ``point_dict`` (crop + floor + features) and the encoder's voxel averaging
   (``voxelize_points``) on SemanticKITTI seq 00 frame 0 (124,668 points) with the KITTI preset (0.05 m).
2. fwd+bwd s/scan of a 3-level sparse UNet (32/64/128, the configuration REFERENCES.md quotes: 2.2 s on 2 threads)
   and of ``sparse_unet_xs`` on the same scan, with 1 and 2 intra-op threads (median of ``--repeats``).
3. Quality of a run (``--run RUN_DIR`` of ``python -m pretrain lidar``): the SemanticKITTI per-point probe
   (frames 0-1 train, 2 tests; linear and kNN mIoU, "all" vs "last" levels) for the pretrained encoder and a
   random one, and the rotation head's held-out accuracy over every rotation bin of the held-out pairs vs chance.

    python benchmarks/lidar.py [--run RUN_DIR] [--repeats 3] [--skip-speed]

Prints markdown tables and writes benchmarks/results/lidar.json (with the load average next to the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KITTI = (REPO / ".." / "shared" / "data" / "3d" / "semantickitti").resolve()

import models  # noqa: E402
from modalities.lidar.readers import read_sweep  # noqa: E402
from modalities.lidar.options import LidarOptions  # noqa: E402
from modalities.lidar.voxels import PRESETS, crop_to_range, point_dict  # noqa: E402
from models.sparse_unet import SparseUNet  # noqa: E402
from models.sparse_voxels import voxelize_points  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (rulebook code paths, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed(repeats: int) -> dict:
    sweep = read_sweep(KITTI / "sequences/00/velodyne/000000.bin")
    grid = PRESETS["kitti"]
    xyz, inten = torch.from_numpy(sweep.xyz), torch.from_numpy(sweep.intensity)

    def vox() -> dict:
        keep = crop_to_range(xyz, grid)
        return point_dict([(xyz[keep], inten[keep])], grid)

    pts = vox()
    out = {"points_in_range": int(len(pts["coord"])), "voxels": int(len(voxelize_points(pts)[0].indices)),
           "voxelise_ms": 1000 * _median_time(vox, repeats * 3),
           "voxel_average_ms": 1000 * _median_time(lambda: voxelize_points(pts), repeats * 3), "fwd_bwd_s": {}}
    for name, make in (("unet_32_64_128", lambda: SparseUNet(4, (32, 64, 128), enc_blocks=2, dec_blocks=2)),
                       ("sparse_unet_xs", lambda: models.create("sparse_unet_xs"))):
        torch.manual_seed(0)
        net = make()
        for threads in (1, 2):
            torch.set_num_threads(threads)

            def step() -> None:
                net.zero_grad(set_to_none=True)
                net(pts)["point_feat"].square().mean().backward()

            out["fwd_bwd_s"][f"{name}@{threads}thr"] = _median_time(step, repeats)
    torch.set_num_threads(1)
    return out


def quality(run: Path) -> dict:
    from pretrain import objectives
    from pretrain.config import load_run_config
    from pretrain.evaluate import random_encoder_like, segmentation_probe
    from modalities.lidar import build_dataset, collate_pairs
    from modalities.lidar.probes import semantickitti_probe

    cfg = load_run_config(run / "config.yaml")
    data = LidarOptions.of(cfg.data)
    enc = models.load_pretrained(run / "encoder")
    probe = semantickitti_probe(KITTI, data.grid, max_points=data.max_points)
    rows = segmentation_probe({"pretrained": enc, "random init": random_encoder_like(run / "encoder")},
                              "semantickitti_points", probe)
    # rotation head: rebuild the objective from the checkpoint (our own file: Fabric's dict of state dicts)
    obj = objectives.create(models.create(**cfg.model), dict(cfg.objective))
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    obj.load_state_dict(state["objective"])
    obj.eval()
    val = build_dataset(cfg.data, "val")
    accs = [obj.rotation_accuracy(collate_pairs([val[i]]), max_scans=1) for i in range(len(val))]
    return {"run": str(run), "probe": rows, "rotation_bins": obj.bins, "rotation_heldout_acc": float(np.mean(accs)),
            "rotation_chance": 1.0 / obj.bins, "heldout_pairs": len(val)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="run folder of python -m pretrain lidar")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result: dict = {"command": " ".join([sys.executable, *sys.argv]), "loadavg_before": os.getloadavg(),
                    "torch": torch.__version__}
    if not args.skip_speed:
        result["speed"] = speed(args.repeats)
        s = result["speed"]
        print(f"\nKITTI seq 00 frame 0: {s['points_in_range']} points in the KITTI range, {s['voxels']} voxels (0.05 m)\n")
        print("| step | time |\n|---|---|")
        print(f"| voxelise (crop, floor, features) | {s['voxelise_ms']:.1f} ms/scan |")
        print(f"| voxel averaging (encoder input) | {s['voxel_average_ms']:.1f} ms/scan |")
        for k, v in s["fwd_bwd_s"].items():
            print(f"| fwd+bwd {k} | {v:.2f} s/scan |")
    if args.run:
        result["quality"] = q = quality(args.run)
        print("\n| encoder | levels | linear mIoU | kNN mIoU | linear acc |\n|---|---|---|---|---|")
        for r in q["probe"]:
            print(f"| {r['encoder']} | {r['levels']} | {r['linear_miou']:.3f} | {r['knn_miou']:.3f} | "
                  f"{r['linear_acc']:.3f} |")
        print(f"\nrotation head, held-out pairs ({q['heldout_pairs']}), all {q['rotation_bins']} bins: "
              f"accuracy {q['rotation_heldout_acc']:.3f} (chance {q['rotation_chance']:.3f})")
    result["loadavg_after"] = os.getloadavg()
    out = REPO / "benchmarks" / "results" / "lidar.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
