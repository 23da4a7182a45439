"""MSM-pretrained vs randomly initialised sparse UNets under MSM's probing protocol, on the real labelled scenes.

For each dataset, a short MSM pretraining run (``pretrain.loop.train``, the scenes recipe with a small 5-level UNet)
on that dataset's *unlabelled training data only*, then ``pretrain.evaluate.segmentation_probe``: frozen per-point
features of every decoder level concatenated (``all``) and of the last level only (``last``), a logistic-regression
probe and a 5-NN vote, scored by mIoU on the held-out part, for the pretrained encoder and for a randomly
initialised one of the same architecture.

- ``sensaturban``: the SensatUrban crop, 0.1 m voxels; pretraining sees the points of the probe's training part
  only (``modalities.scenes.probes.spatial_halves``), the probe tests on the other part.
- ``semantickitti``: KITTI sequence 00, 0.2 m voxels; pretraining sees frames 0, 1 and 3 (frame 3 is unlabelled);
  the probe trains on frames 0-1 and tests on frame 2, which pretraining never sees.

    python benchmarks/scenes_probe.py [--steps 400] [--datasets sensaturban,semantickitti] [--seed 0]

Prints one markdown table and writes benchmarks/results/scenes_probe.json (``scenes_probe_seed<k>.json`` for
``--seed k > 0``: pretraining stream, weights and random-init control all change with the seed), with the load
average: the machine is shared, so the times are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import models
import modalities
from modalities.scenes.probes import KITTI_FRAMES, SENSATURBAN_CROP, semantickitti_probe, sensaturban_probe
from modalities.scenes.readers import read_scene
from pretrain import config as C
from pretrain.evaluate import random_encoder_like, segmentation_probe
from pretrain.loop import read_metrics, train

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data" / "3d").resolve()
RESULT = REPO / "benchmarks" / "results" / "scenes_probe.json"
MODEL = {"channels": [16, 24, 32, 48, 64], "enc_blocks": 1, "dec_blocks": 1}

DATASETS = {
    "sensaturban": dict(grid_size=0.1, max_points=6000, crop=[0.5, 0.9], patch_size=8),
    "semantickitti": dict(grid_size=0.2, max_points=8000, crop=[0.4, 0.7], patch_size=8),
}


def sensaturban_data(out: Path, grid: float) -> tuple[Path, object]:
    """The crop's training part as a Pointcept folder (no labels), and the probe set."""
    probe = sensaturban_probe(SHARED / SENSATURBAN_CROP, grid_size=grid)
    tr, te = probe.x_train[0]["coord"].numpy(), probe.x_test[0]["coord"].numpy()
    axis = next(a for a in (0, 1) if tr[:, a].max() < te[:, a].min() or te[:, a].max() < tr[:, a].min())
    lo_side = tr[:, axis].max() < te[:, axis].min()
    cut = (tr[:, axis].max() + te[:, axis].min()) / 2 if lo_side else (te[:, axis].max() + tr[:, axis].min()) / 2
    scene = read_scene(SHARED / SENSATURBAN_CROP)
    keep = scene.coord[:, axis] < cut if lo_side else scene.coord[:, axis] > cut
    folder = out / "sensaturban_train"
    folder.mkdir(parents=True)
    np.save(folder / "coord.npy", scene.coord[keep])
    np.save(folder / "color.npy", scene.color[keep])
    return folder, probe


def kitti_data(out: Path, grid: float) -> tuple[Path, object]:
    """Frames 0, 1, 3 linked into a SemanticKITTI layout (without labels), and the probe set (0-1 train, 2 test)."""
    src = SHARED / KITTI_FRAMES
    velo = out / "kitti" / "sequences" / "00" / "velodyne"
    velo.mkdir(parents=True)
    for f in ("000000", "000001", "000003"):
        (velo / f"{f}.bin").symlink_to(src / f"{f}.bin")
    return out / "kitti", semantickitti_probe(src, grid_size=grid)


def run(name: str, steps: int, batch: int, out: Path, seed: int) -> list[dict]:
    spec = DATASETS[name]
    data, probe = (sensaturban_data if name == "sensaturban" else kitti_data)(out, spec["grid_size"])
    overrides = [f"objective.patch_size={spec['patch_size']}", "objective.ema=[0.99,0.999]",
                 f"optim.warmup_steps={max(1, steps // 20)}", f"train.rankme_every={max(1, steps // 4)}",
                 f"train.ckpt_every={steps}", "train.log_every=20", "train.num_workers=0", "train.threads=1",
                 "train.rankme_samples=4", f"train.seed={seed}"]
    extra = {"data": {"path": str(data), "grid_size": spec["grid_size"], "val_fraction": 0.0,
                      "repeat": 8, "augment": {"max_points": spec["max_points"], "crop": spec["crop"]}},
             "model": MODEL, "train": {"max_steps": steps, "batch_size": batch}}
    cfg = C.resolve(modalities.get("scenes").recipe, None, overrides, extra, demo=False)
    run_dir = out / f"run_{name}"
    t = time.perf_counter()
    train(cfg, run_dir, progress=False)
    train_s = time.perf_counter() - t
    metrics = read_metrics(run_dir)
    encoders = {"msm": models.load_pretrained(run_dir / "encoder"),
                "random init": random_encoder_like(run_dir / "encoder", seed)}
    t = time.perf_counter()
    rows = segmentation_probe(encoders, name, probe, max_train_points=10000, max_test_points=10000, seed=seed)
    probe_s = time.perf_counter() - t
    for r in rows:
        r.update(steps=steps, batch=batch, grid_size=spec["grid_size"], train_s=round(train_s, 1),
                 probe_s=round(probe_s, 1), loss_first=metrics[0]["loss"], loss_last=metrics[-1]["loss"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", default="sensaturban,semantickitti")
    args = p.parse_args()
    torch.set_num_threads(1)  # spconv's CPU kernels slow down badly when threads share busy cores
    load_before = os.getloadavg()
    rows: list[dict] = []

    result = RESULT if args.seed == 0 else RESULT.with_name(f"scenes_probe_seed{args.seed}.json")

    def write() -> None:  # after every dataset, so a long run keeps what it has measured
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps({
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "threads": 1, "model": MODEL,
            "datasets": DATASETS, "rows": rows}, indent=2))

    with tempfile.TemporaryDirectory(prefix="scenes_probe_") as tmp:
        for name in args.datasets.split(","):
            rows += run(name, args.steps, args.batch, Path(tmp), args.seed)
            write()
    print("| data | encoder | levels | dim | train / test points | classes | linear mIoU | linear acc | kNN mIoU | "
          "kNN acc | loss first -> last | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['probe']} | {r['encoder']} | {r['levels']} | {r['dim']} | {r['n_train']} / {r['n_test']} | "
              f"{r['classes']} | {r['linear_miou']:.3f} | {r['linear_acc']:.3f} | {r['knn_miou']:.3f} | "
              f"{r['knn_acc']:.3f} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} | {r['train_s']:.0f} |")
    print(f"\nwrote {result.relative_to(REPO)}")


if __name__ == "__main__":
    main()
