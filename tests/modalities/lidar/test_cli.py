"""``python -m pretrain lidar`` end to end on the shared SemanticKITTI frames: train, export, probe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pretrain.cli import main
from pretrain.loop import read_metrics
from tests.conftest import shared_data


@pytest.mark.slow
def test_pretrain_lidar_on_semantickitti_trains_exports_and_probes(tmp_path, run_cache):
    out = tmp_path / "run"
    data = shared_data("3d/semantickitti")
    assert main(["lidar", "--data", str(data), "--max-steps", "3", "--batch-size", "2", "--quiet", "--out", str(out),
                 "--set", "model.name=sparse_unet_xs", "--set", "data.voxel_size=[0.3,0.3,0.3]",
                 "--set", "data.max_points=3000", "--set", "train.threads=1", "--set", "train.num_workers=0",
                 "--set", "train.rankme_every=3", "--set", "objective.contrast_points=256",
                 "--set", "objective.flow_points=256"]) == 0
    rows = read_metrics(out)
    assert rows[-1]["step"] == 3 and np.isfinite(rows[-1]["loss"]) and "flow_pairs" in rows[-1]
    assert (out / "encoder" / "model.safetensors").is_file()
    probes = json.loads((out / "probes.json").read_text())
    seg = [r for r in probes if r["task"] == "segmentation"]
    # no --probe-data: the simulated streets, plus the labelled frames of --data
    assert {(r["probe"], r["encoder"], r["levels"]) for r in seg} == {
        (p, e, lv) for p in ("simulated_streets", "semantickitti_points") for e in ("pretrained", "random init")
        for lv in ("all", "last")}
    assert all(0 <= r["linear_miou"] <= 1 for r in seg)
    report = (out / "report.md").read_text()
    sim = next(line for line in report.splitlines() if line.startswith("- **simulated_streets**"))
    assert "simulated streets (seed 7, not the training streets)" in sim and "classes present: car," in sim
    kitti = next(line for line in report.splitlines() if line.startswith("- **semantickitti_points**"))
    assert "classes present: car," in kitti and "19 classes" not in kitti


def test_bad_data_is_one_line(tmp_path, run_cache, capsys):
    (tmp_path / "000000.bin").write_bytes(b"\x00" * 10)
    assert main(["lidar", "--data", str(tmp_path), "--max-steps", "1", "--quiet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a multiple of the 16-byte row" in err[-1]


def test_empty_sweep_is_named_before_training(tmp_path, run_cache, capsys):
    (tmp_path / "000000.bin").write_bytes(b"")
    assert main(["lidar", "--data", str(tmp_path), "--max-steps", "1", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("000000.bin: empty sweep (no points)")
