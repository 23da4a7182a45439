"""The training loop's guarantees, on real ECG records and real training steps:
exact resume after a kill, a crash during a checkpoint write, the NaN guard, and 2-process DDP."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import modalities
from pretrain.config import OptimConfig
from pretrain.loop import param_groups, read_metrics
from pretrain.sampling import SeededBatches
from pretrain.schedules import lr_at, lr_beta1_at, wd_at

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "model.dim=32", "--set", "model.depth=2", "--set", "model.num_heads=4",
        "--set", "data.window_s=2.0", "--set", "optim.warmup_steps=3", "--set", "train.log_every=1",
        "--set", "train.rankme_every=4", "--set", "train.rankme_samples=16", "--set", "train.num_workers=0",
        "--no-eval", "--quiet"]


def pretrain(args: list[str], env: dict | None = None, check: bool = True,
             fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m pretrain ARGS``; with ``fault`` (``kill_after_step:N``, ``crash_in_checkpoint:N``) through
    tests/faults.py, which injects it with the loop's test hooks."""
    e = {**os.environ, **(env or {})}
    e.pop("MODALITIES_RUN_DIR", None)
    entry = ["-m", "tests.faults", fault] if fault else ["-m", "pretrain"]
    proc = subprocess.run([sys.executable, *entry, *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): r["loss"] for r in read_metrics(run)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_schedules_by_formula():
    assert lr_at(0, 100, 1e-3, 0.0, 10) == pytest.approx(1e-4)
    assert lr_at(9, 100, 1e-3, 0.0, 10) == pytest.approx(1e-3)
    assert lr_at(55, 100, 1e-3, 0.0, 10) == pytest.approx(0.5e-3)  # half-way through the cosine
    assert lr_at(100, 100, 1e-3, 1e-6, 10) == pytest.approx(1e-6)
    assert wd_at(0, 100, 0.01, 0.1) == pytest.approx(0.01)
    assert wd_at(50, 100, 0.01, 0.1) == pytest.approx(0.055)
    assert wd_at(100, 100, 0.01, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("total, warmup", [(500, 150), (40, 7)])
def test_one_cycle_schedule_equals_torch_one_cycle_lr(total, warmup):
    """``schedule: one_cycle`` reproduces torch's OneCycleLR (lr and Adam's beta1) at every step, as the
    Filter2Noise authors use it: OneCycleLR(AdamW(lr=1e-3), max_lr=1e-3, total_steps, pct_start)."""
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([w], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total, pct_start=warmup / total)
    o = OptimConfig(lr=1e-3, min_lr=1e-3 / 25 / 1e4, warmup_steps=warmup, schedule="one_cycle",
                    beta1_cycle=[0.85, 0.95])
    o.validate()
    for step in range(total):
        lr, beta1 = lr_beta1_at(o, step, total)
        assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        assert beta1 == pytest.approx(opt.param_groups[0]["betas"][0], rel=1e-12), step
        opt.step()
        sched.step()


def test_decay_all_puts_biases_and_norms_in_the_decayed_group():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    assert [len(g["params"]) for g in param_groups(m, 0.01)] == [1, 3]
    assert [len(g["params"]) for g in param_groups(m, 0.01, decay_all=True)] == [4, 0]


def test_sample_stream_is_split_across_processes_and_resumable():
    one = iter(SeededBatches(50, 8, seed=3))
    two = [iter(SeededBatches(50, 8, seed=3, rank=r, world=2)) for r in range(2)]
    later = iter(SeededBatches(50, 8, seed=3, start_micro_step=9))
    batches = [next(one) for _ in range(10)]
    for b in batches[:10]:
        assert next(two[0]) + next(two[1]) == b
    assert next(later) == batches[9]
    # every epoch visits every index once
    flat = [i for b in batches[:7] for i, _ in b][:50]
    assert sorted(flat) == list(range(50))
    with pytest.raises(Exception, match="not divisible"):
        SeededBatches(50, 7, seed=0, world=2)


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path, signals_dir, run_cache):
    common = ["ecg", "--data", str(signals_dir), "--max-steps", "14", "--batch-size", "8",
              "--set", "train.ckpt_every=5", *TINY]
    pretrain([*common, "--out", str(tmp_path / "a")])
    killed = pretrain([*common, "--out", str(tmp_path / "b")], fault="kill_after_step:12",
                      check=False)
    assert killed.returncode == 137
    assert not (tmp_path / "b" / "encoder").exists()
    pretrain(["ecg", "--resume", str(tmp_path / "b"), "--quiet", "--no-eval"])
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(a) == sorted(b) == list(range(1, 15))
    assert a == b  # bit-identical losses, including the steps after the resume
    ta = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    tb = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.slow
def test_crash_during_checkpoint_write_keeps_previous(tmp_path, signals_dir, run_cache):
    run = tmp_path / "run"
    args = ["ecg", "--data", str(signals_dir), "--max-steps", "10", "--batch-size", "4", "--out", str(run),
            "--set", "train.ckpt_every=4", *TINY]
    crashed = pretrain(args, fault="crash_in_checkpoint:8", check=False)
    assert crashed.returncode == 137
    ckpt = run / "checkpoints" / "last.ckpt"
    assert (run / "checkpoints" / "last.ckpt.tmp").is_file()  # the half-written file
    state = torch.load(ckpt, weights_only=True)  # the previous checkpoint is whole
    assert state["step"] == 4
    pretrain(["ecg", "--resume", str(run), "--quiet", "--no-eval"])
    assert torch.load(ckpt, weights_only=True)["step"] == 10
    assert max(losses(run)) == 10


@pytest.mark.slow
def test_nan_stops_clearly_and_keeps_good_checkpoint(tmp_path, signals_dir, run_cache):
    run = tmp_path / "run"
    pretrain(["ecg", "--data", str(signals_dir), "--max-steps", "4", "--batch-size", "4", "--out", str(run),
              "--set", "train.ckpt_every=2", *TINY])
    ckpt = run / "checkpoints" / "last.ckpt"
    before = sha(ckpt)
    bad = pretrain(["ecg", "--resume", str(run), "--max-steps", "12", "--set", "optim.lr=1e38",
                    "--set", "train.ckpt_every=1", "--quiet", "--no-eval"], check=False)
    assert bad.returncode == 2
    err = [l for l in bad.stderr.strip().splitlines() if not l.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: step "), bad.stderr
    assert any(w in err[0] for w in ("is nan", "is inf", "not finite")), err
    assert "stopped without saving" in err[0] or "checkpoint not written" in err[0]
    failed_step = int(err[0].split()[2].rstrip(":"))
    state = torch.load(ckpt, weights_only=True)  # whatever is on disk loads and holds no NaN/Inf
    assert 2 <= state["step"] < failed_step
    assert all(torch.isfinite(v).all() for v in state["objective"].values())
    if state["step"] == 4:
        assert sha(ckpt) == before


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, signals_dir, run_cache):
    common = ["ecg", "--data", str(signals_dir), "--max-steps", "5", "--batch-size", "8", *TINY]
    pretrain([*common, "--out", str(tmp_path / "one"), "--devices", "1", "--set", "train.threads=1"])
    pretrain([*common, "--out", str(tmp_path / "two"), "--devices", "2", "--accelerator", "cpu",
              "--set", "train.threads=1"])
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4, 5]
    for s in one:
        assert two[s] == pytest.approx(one[s], rel=1e-4, abs=1e-6), (s, one[s], two[s])
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    w2 = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=True)["objective"]
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-3, atol=1e-5), k


class _BrokenRecords(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        raise modalities.DataError("/data/sweep.bin: NaN points in a labelled frame")


def test_a_reader_error_in_a_dataloader_worker_keeps_its_one_line():
    from pretrain.loop import worker_message

    loader = torch.utils.data.DataLoader(_BrokenRecords(), num_workers=1)
    with pytest.raises(modalities.DataError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # what torch re-raises ...
    assert worker_message(caught.value) == "/data/sweep.bin: NaN points in a labelled frame"  # ... what we print
