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
