"""Micro-batches: the gradient cache gives the whole batch's gradients, the memory plan fits the budget.

Gradient-cache equivalence: for every objective whose loss couples the samples of a batch (``batch_loss``),
4 micro-batches of 8 give the loss and the parameter gradients of one batch of 32 (float64, so the only
difference is the summation order), through Lightning Fabric as the loop runs it. A test with dropout checks
that the cache replays torch's RNG: without the replay the second pass draws other masks and the gradients
are those of another loss.
"""

from __future__ import annotations

import copy

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn

from pretrain import micro, objectives
from pretrain.config import ConfigError
from pretrain.objectives.infonce import NoNegatives

N, CHUNKS = 32, 4


class Encoder(nn.Module):
    """[B, 2, 12] -> [B, 6] through a hidden layer, with optional dropout."""

    embed_dim = 6

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(24, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 6))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


CASES = {
    "vicreg": {"projector_dim": 16},
    "barlow_twins": {"projector_dim": 16},
    "infonce_teacher_subjects": {"name": "infonce", "projector_hidden_dim": 16, "projector_dim": 8},
    "infonce_simclr_no_koleo": {"name": "infonce", "momentum_teacher": False, "koleo_weight": 0.0,
                                "exclude_same_subject": False, "projector_hidden_dim": 16, "projector_dim": 8},
    "cross_modal": {"projector_hidden_dim": 16, "projector_dim": 8},
}


def make_objective(case: str, dropout: float = 0.0) -> objectives.Objective:
    cfg = dict(CASES[case])
    name = cfg.pop("name", case)
    torch.manual_seed(0)
    if name == "cross_modal":
        cfg["partner_model"] = Encoder(dropout)
        cfg["primary_channels"], cfg["partner_channels"] = [0, 1], [2, 3]
    return objectives.create(Encoder(dropout), {"name": name, **cfg}).double()


def make_batch(case: str) -> dict:
    g = torch.Generator().manual_seed(1)
    if case == "cross_modal":
        return {"signal": torch.randn(N, 4, 12, generator=g, dtype=torch.float64), "seed": torch.arange(N)}
    base = torch.randn(N, 2, 12, generator=g, dtype=torch.float64)
    views = torch.stack([base + 0.3 * torch.randn(N, 2, 12, generator=g, dtype=torch.float64) for _ in range(2)])
    return {"views": views, "seed": torch.arange(N), "subject": [f"s{i % 7}" for i in range(N)]}


def split(batch: dict, chunks: int) -> list[dict]:
    n = N // chunks
    out = []
    for c in range(chunks):
        sl = slice(c * n, (c + 1) * n)
        part = {k: (v[:, sl] if k == "views" else v[sl]) for k, v in batch.items()}
        out.append(part)
    return out


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def fabric():
    f = Fabric(accelerator="cpu", devices=1)
    f.launch()
    return f


def cached(fabric, objective, batch, chunks=CHUNKS):
    module = fabric.setup_module(objective)
    module.mark_forward_method("embeddings")
    torch.manual_seed(5)
    out = micro.gradient_cache_step(module, objective, split(batch, chunks), fabric, 1.0, True)
    return out, grads(objective)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_cache_equals_whole_batch(fabric, case):
    whole = make_objective(case)
    batch = make_batch(case)
    out_whole = whole(batch)
    out_whole["loss"].backward()
    expected = grads(whole)
    out, got = cached(fabric, make_objective(case), batch)
    assert float(out["loss"]) == pytest.approx(float(out_whole["loss"]), rel=1e-12)
    assert set(got) == set(expected) and len(got) >= 4
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-9, atol=1e-12, msg=k)
    # the gradient is not trivially small: a cache that dropped the cross-sample terms would differ
    assert max(float(g.abs().max()) for g in got.values()) > 1e-3


def test_gradient_cache_misses_cross_terms_without_the_whole_loss(fabric):
    """The control: summing per-micro-batch losses (plain accumulation) does not give VICReg's gradients."""
    whole = make_objective("vicreg")
    batch = make_batch("vicreg")
    whole(batch)["loss"].backward()
    expected = grads(whole)
    plain = make_objective("vicreg")
    for part in split(batch, CHUNKS):
        (plain(part)["loss"] / CHUNKS).backward()
    diff = max(float((grads(plain)[k] - expected[k]).abs().max()) for k in expected)
    assert diff > 1e-3


def test_gradient_cache_replays_dropout(fabric):
    """With dropout, the gradient is that of the loss on the rows the first pass drew (same masks twice)."""
    reference = make_objective("vicreg", dropout=0.3)
    batch = make_batch("vicreg")
    torch.manual_seed(5)
    rows = [reference.embeddings(part) for part in split(batch, CHUNKS)]
    full = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
    loss = reference.loss_from(full, batch)["loss"]
    loss.backward()
    expected = grads(reference)
    out, got = cached(fabric, make_objective("vicreg", dropout=0.3), batch)
    assert float(out["loss"]) == pytest.approx(float(loss), rel=1e-12)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-9, atol=1e-12, msg=k)


def test_one_subject_batch_is_refused():
    objective = make_objective("infonce_teacher_subjects")
    batch = make_batch("infonce_teacher_subjects")
    batch["subject"] = ["rec1"] * N
    with pytest.raises(NoNegatives, match="exclude_same_subject=false") as e:
        objective(batch)
    assert "\n" not in str(e.value) and "'rec1'" in str(e.value)
    batch["subject"] = ["rec1"] * (N - 1) + ["rec2"]  # one other subject: negatives exist
    assert float(objective(batch)["loss"]) > 0


# ------------------------------------------------------------------------------------------- the plan

class Wide(Encoder):
    """Activations of about 8 MB a sample and tiny weights, so that peak-memory readings are activations, well
    above the allocator's noise."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(24))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x.flatten(1).repeat(1, 40_000) * self.scale.repeat(40_000))  # [B, 960k]
        return self.net(h.view(x.shape[0], 40_000, 24).mean(1))


def test_plan_keeps_the_batch_when_it_fits_and_splits_when_it_does_not(fabric):
    torch.manual_seed(0)
    objective = objectives.create(Wide(), {"name": "vicreg", "projector_dim": 8})
    batch = make_batch("vicreg")

    def make(b):
        return {"views": batch["views"][:, :b].float(), "seed": batch["seed"][:b]}

    roomy = micro.plan_micro_batches("auto", N, make, objective, fabric, budget_gb=4.0, local_processes=1)
    assert (roomy.micro, roomy.chunks) == (N, 1) and set(roomy.measured) == {2, 4, 8, 16, 32}
    per_sample = (roomy.measured[32] - roomy.measured[8]) / 24
    assert per_sample > 2e6  # the probe sees activations (several MB a sample), not the allocator's noise
    # room for a little more than 8 samples: micro-batches of 8 (or 4) that divide 32
    tight_gb = 1.1 * roomy.measured[8] / micro.GIB
    tight = micro.plan_micro_batches("auto", N, make, objective, fabric, budget_gb=tight_gb, local_processes=1)
    assert tight.micro in (4, 8) and tight.micro * tight.chunks == N
    assert "micro-batches" in tight.describe(N)
    with pytest.raises(ConfigError, match="train.micro_batch: even 2 sample") as e:
        micro.plan_micro_batches("auto", N, make, objective, fabric, budget_gb=1e-9, local_processes=1)
    assert "\n" not in str(e.value)
    # parameters and gradients are left as they were by the trial steps
    assert all(p.grad is None for p in objective.parameters())


def test_plan_given_micro_batch_must_divide(fabric):
    objective = make_objective("vicreg")
    assert micro.plan_micro_batches(8, N, None, objective, fabric, 0.0, 1).chunks == 4
    with pytest.raises(ConfigError, match="train.micro_batch: 5 does not divide the 32"):
        micro.plan_micro_batches(5, N, None, objective, fabric, 0.0, 1)
    mixed = objectives.create(Encoder(), {"name": "barlow_twins", "projector_dim": 8, "mixed": True})
    with pytest.raises(ConfigError, match="cannot be split"):
        micro.plan_micro_batches(8, N, None, mixed, fabric, 0.0, 1)


def test_trial_restores_buffers(fabric):
    """A trial step through batch norm leaves the running statistics as they were."""
    enc = Encoder()
    enc.net.insert(1, nn.BatchNorm1d(16))
    objective = objectives.create(enc, {"name": "vicreg", "projector_dim": 8}).double()
    before = copy.deepcopy(objective.state_dict())
    batch = make_batch("vicreg")
    assert micro.measure_step(objective, {"views": batch["views"][:, :4]}, fabric) >= 0
    after = objective.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------ real runs, end to end

def _run(tmp_path, name, signals_dir, *extra):
    from tests.pretrain.test_loop import TINY, losses, pretrain

    out = tmp_path / name
    proc = pretrain(["ecg", "--data", str(signals_dir), "--max-steps", "4", "--batch-size", "8", "--out", str(out),
                     *TINY, *extra])
    return losses(out), proc.stderr, out


@pytest.mark.slow
def test_micro_batched_run_equals_whole_batch_run(tmp_path, signals_dir, run_cache):
    """VICReg on the real records: 4 micro-batches of 2 log the losses of one batch of 8, and the plan lands in
    config.yaml."""
    import yaml

    # auto: the probe's decision (the whole batch fits) is printed and written
    whole, err, auto = _run(tmp_path, "whole", signals_dir, "--objective", "vicreg")
    assert "memory: 8 samples per process -> the batch fits in one pass; measured peak 2 samples" in err
    assert yaml.safe_load((auto / "config.yaml").read_text())["train"]["micro_batch"] == 8
    split_, _, out = _run(tmp_path, "split", signals_dir, "--objective", "vicreg", "--set", "train.micro_batch=2")
    assert sorted(whole) == sorted(split_) == [1, 2, 3, 4]
    for step in whole:
        assert split_[step] == pytest.approx(whole[step], rel=2e-5), step
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["micro_batch"] == 2


def test_warmup_longer_than_the_run_is_fitted(tmp_path, signals_dir, run_cache):
    import yaml

    from pretrain.loop import read_metrics

    _, err, out = _run(tmp_path, "warm", signals_dir, "--set", "optim.warmup_steps=10000")
    line = [x for x in err.splitlines() if "optim.warmup_steps=10000" in x]
    assert len(line) == 1 and "never pass" in line[0] and "using 1 (10 % of the run)" in line[0]
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["warmup_steps"] == 1
    lrs = [r["lr"] for r in read_metrics(out)]
    assert max(lrs) == pytest.approx(yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"])


def test_constant_loss_with_zero_gradients_stops():
    from pretrain.guards import ConstantLossGuard, TrainingDiverged

    said = []
    guard = ConstantLossGuard(said.append, patience=3)
    for step, (loss, g) in enumerate([(1.0, 0.5), (0.5, 0.1), (0.5, 0.2), (0.5, 0.3), (0.5, 0.1)], 1):
        guard.check(step, loss, g)
    assert len(said) == 1 and "exactly 0.5 for 3 steps" in said[0]
    guard = ConstantLossGuard(said.append, patience=3)
    guard.check(1, 0.0, 0.0)
    guard.check(2, 0.0, 0.0)
    with pytest.raises(TrainingDiverged, match="step 3: the loss has been exactly 0.0 for 3 steps with all-zero"):
        guard.check(3, 0.0, 0.0)
