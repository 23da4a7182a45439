"""Runs on a user's data that could not learn are refused in one line, or run with a documented fallback that learns:
a PPG archive of one ICU record (one subject) under the wearable recipe's subject-aware InfoNCE."""

from __future__ import annotations

import pytest

from pretrain.loop import read_metrics
from tests.pretrain.test_loop import pretrain

ONE = ["--max-steps", "4", "--batch-size", "4", "--set", "data.window_s=10", "--no-eval", "--quiet", "--set", "train.num_workers=0",
       "--set", "train.log_every=1", "--set", "train.rankme_samples=4"]


@pytest.fixture(scope="module")
def one_record(tmp_path_factory, signals_dir):
    """The real ICU record a103l (ECG II, V and PLETH at 250 Hz) as a folder of one record."""
    import shutil

    folder = tmp_path_factory.mktemp("one_record")
    for suffix in (".hea", ".mat"):
        shutil.copy(signals_dir / "challenge2015" / f"a103l{suffix}", folder)
    return folder


@pytest.mark.slow
def test_one_subject_contrastive_run_is_refused_then_the_fallback_learns(one_record, tmp_path, run_cache):
    refused = pretrain(["ppg", "--data", str(one_record), "--out", str(tmp_path / "a"), *ONE], check=False)
    assert refused.returncode == 2
    errors = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "one subject ('a103l')" in errors[0]
    assert "objective.exclude_same_subject=false" in errors[0]
    assert not (tmp_path / "a" / "metrics.csv").exists()  # refused before the first step
    pretrain(["ppg", "--data", str(one_record), "--out", str(tmp_path / "b"), *ONE,
              "--set", "objective.exclude_same_subject=false"])
    losses = [r["contrastive"] for r in read_metrics(tmp_path / "b")]
    assert len(losses) == 4 and min(losses) > 0.1 and len(set(losses)) == 4


def test_fit_schedule_scales_a_long_warmup_and_names_small_data():
    """The recipe's schedule fitted to the run: a warm-up over half the run drops to 10 % of it; fewer samples than
    a batch is named, except one image for a per-image denoiser (it filters the repeated image once per step)."""
    from pretrain.config import build_config
    from pretrain.schedules import fit_schedule

    def cfg(warmup: int, steps: int, batch: int):
        return build_config({"modality": "ct", "model": {"name": "bilateral"}, "objective": {"name": "filter2noise"},
                             "optim": {"warmup_steps": warmup}, "train": {"max_steps": steps, "batch_size": batch}})

    c = cfg(10000, 50, 8)
    lines = fit_schedule(c, 100)
    assert c.optim.warmup_steps == 5 and len(lines) == 1 and "optim.warmup_steps=10000" in lines[0]
    assert "never pass 5e-06, 0.5 % of optim.lr=0.001" in lines[0]
    c = cfg(20, 500, 2)
    assert fit_schedule(c, 500) == [] and c.optim.warmup_steps == 20
    assert "1 training sample(s) for a global batch of 2" in fit_schedule(cfg(20, 500, 2), 1)[0]
    assert fit_schedule(cfg(20, 500, 2), 1, one_image_ok=True) == []
    assert len(fit_schedule(cfg(20, 500, 4), 3, one_image_ok=True)) == 1
