"""A short real pretraining on the shared ECG records beats a random encoder of the same architecture on the
record-identity probe (frozen features, blocked cross-validation over thirds of each record), and raises RankMe:
the library's end-to-end promise."""

from __future__ import annotations

import json

import pytest

import modalities
from pretrain import config as C
from pretrain.evaluate import evaluate_run
from pretrain.loop import cpu_has_bf16, train


@pytest.mark.slow
def test_vicreg_beats_random_on_record_identity(tmp_path, signals_dir, run_cache):
    cfg = C.resolve(modalities.get("ecg").recipe, None,
                    ["objective.name=vicreg", "optim.lr=5e-4", "optim.warmup_steps=15", "train.rankme_every=50",
                     "train.ckpt_every=1000", "train.num_workers=0", "train.log_every=10"],
                    {"data": {"path": str(signals_dir), "probe_data": str(signals_dir)},
                     "train": {"max_steps": 150, "batch_size": 16,
                               # bf16 is emulated (8.6x slower) on CPUs without bf16 instructions
                               "precision": "bf16-mixed" if cpu_has_bf16() else "32-true"}})
    train(cfg, tmp_path / "run", progress=False)
    evaluate_run(tmp_path / "run")
    rows = {(r["probe"], r["encoder"]): r for r in json.loads((tmp_path / "run" / "probes.json").read_text())}
    pre, rnd = rows[("record_identity", "pretrained")], rows[("record_identity", "random init")]
    print({k: (round(pre[k], 3), round(rnd[k], 3)) for k in ("knn_bacc", "linear_bacc", "rankme")})
    # measured with identity cross-validated over thirds of each record (387 windows): kNN (the nearest window)
    # 0.819 vs 0.693, logistic 0.779 vs 0.760, RankMe 3.64 vs 1.44 (class-balanced 5-vote: 0.750 vs 0.654; fixed
    # split, 129 test windows: 0.806 vs 0.695); the logistic margin is thin and flipped with a shorter warm-up, so
    # it is reported, not asserted
    assert pre["knn_bacc"] > rnd["knn_bacc"] + 0.05, (pre, rnd)
    assert pre["rankme"] > 2 * rnd["rankme"], (pre, rnd)
