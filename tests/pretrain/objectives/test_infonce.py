"""InfoNCE (with subject-aware negatives), KoLeo and the momentum-teacher objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pretrain.config import ConfigError
from pretrain.objectives.infonce import InfoNCE, InfoNCELoss, KoLeoLoss
from tests.pretrain.objectives.finite_differences import numeric_grad
from tests.pretrain.objectives.tiny_encoder import TinyEncoder


def infonce_ref(q: np.ndarray, k: np.ndarray, t: float, subjects: list[str] | None) -> float:
    n = q.shape[0]
    qn = [q[i] / math.sqrt(sum(v * v for v in q[i])) for i in range(n)]
    kn = [k[i] / math.sqrt(sum(v * v for v in k[i])) for i in range(n)]
    total = 0.0
    for i in range(n):
        positive = math.exp(float(np.dot(qn[i], kn[i])) / t)
        denominator = 0.0
        for j in range(n):
            if j != i and subjects is not None and subjects[j] == subjects[i]:
                continue  # same participant: not a negative
            denominator += math.exp(float(np.dot(qn[i], kn[j])) / t)
        total += -math.log(positive / denominator)
    return total / n


def koleo_ref(x: np.ndarray, eps: float = 1e-8) -> float:
    n = x.shape[0]
    xn = [x[i] / math.sqrt(sum(v * v for v in x[i])) for i in range(n)]
    total = 0.0
    for i in range(n):
        nearest = min(math.sqrt(sum((a - b) ** 2 for a, b in zip(xn[i], xn[j]))) for j in range(n) if j != i)
        total += -math.log(nearest + eps)
    return total / n


SUBJECTS = ["p1", "p2", "p1", "p3", "p2", "p4"]


@pytest.mark.parametrize("subjects", [None, SUBJECTS])
def test_infonce_matches_reference_value_and_gradient(subjects: list[str] | None) -> None:
    rng = np.random.default_rng(5)
    q = rng.normal(size=(6, 4))
    k = q + 0.7 * rng.normal(size=(6, 4))
    t = 0.2
    tq, tk = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    loss = InfoNCELoss(temperature=t)(tq, tk, subjects)
    assert loss.item() == pytest.approx(infonce_ref(q, k, t, subjects), rel=1e-10)
    gq, gk = torch.autograd.grad(loss, (tq, tk))
    for grad, x in ((gq, q), (gk, k)):
        expected = numeric_grad(lambda: infonce_ref(q, k, t, subjects), x)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_same_subject_negatives_are_removed_from_the_denominator() -> None:
    q = torch.randn(6, 4, dtype=torch.float64)
    k = torch.randn(6, 4, dtype=torch.float64)
    loss_fn = InfoNCELoss(temperature=0.5)
    # Fewer negatives -> smaller loss; all-distinct subjects -> same as no subjects.
    assert loss_fn(q, k, SUBJECTS).item() < loss_fn(q, k).item()
    assert loss_fn(q, k, list("abcdef")).item() == pytest.approx(loss_fn(q, k).item(), rel=1e-12)
    # Every sample from one participant leaves only the positive: loss 0.
    assert loss_fn(q, k, ["same"] * 6).item() == pytest.approx(0.0, abs=1e-12)


def test_infonce_is_low_for_aligned_pairs() -> None:
    z = torch.eye(8, dtype=torch.float64)
    aligned = InfoNCELoss(temperature=0.1)(z, z).item()
    shuffled = InfoNCELoss(temperature=0.1)(z, z[torch.roll(torch.arange(8), 1)]).item()
    assert aligned < 1e-3 < 1.0 < shuffled


def test_koleo_matches_reference_value_and_gradient() -> None:
    x = np.random.default_rng(7).normal(size=(6, 3))
    tx = torch.tensor(x, requires_grad=True)
    loss = KoLeoLoss()(tx)
    assert loss.item() == pytest.approx(koleo_ref(x), rel=1e-10)
    (g,) = torch.autograd.grad(loss, (tx,))
    np.testing.assert_allclose(g.numpy(), numeric_grad(lambda: koleo_ref(x), x), rtol=1e-5, atol=1e-7)


def test_koleo_prefers_spread_points() -> None:
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    clumped = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, 0.02], [0.0, 1.0]])
    assert KoLeoLoss()(spread).item() < KoLeoLoss()(clumped).item()


BATCH = {"views": torch.randn(2, 8, 2, 12), "subject": ["a", "b", "a", "c", "d", "e", "f", "g"]}


def test_default_temperatures_follow_the_teacher_setting() -> None:
    assert InfoNCE(TinyEncoder()).loss_fn.temperature == 0.04
    assert InfoNCE(TinyEncoder(), momentum_teacher=False).loss_fn.temperature == 0.1
    assert InfoNCE(TinyEncoder(), temperature=0.3).loss_fn.temperature == 0.3


def test_momentum_teacher_is_frozen_and_updated_by_ema() -> None:
    torch.manual_seed(0)
    objective = InfoNCE(TinyEncoder(), projector_hidden_dim=16, projector_dim=8, momentum=0.9)
    assert all(not p.requires_grad for p in objective.teacher.parameters())
    out = objective(BATCH)
    assert set(out) == {"loss", "contrastive", "koleo"}
    out["loss"].backward()
    assert objective.encoder.lin.weight.grad is not None
    assert all(p.grad is None for p in objective.teacher.parameters())
    with torch.no_grad():
        objective.encoder.lin.weight.add_(1.0)
    before = objective.teacher.encoder.lin.weight.clone()
    objective.on_step_end(1, 10)
    expected = 0.9 * before + 0.1 * objective.encoder.lin.weight
    torch.testing.assert_close(objective.teacher.encoder.lin.weight, expected)
    # Encoder and projector keep a single name each in the state dict (the student tower is not registered).
    assert not any(key.startswith("student") for key in objective.state_dict())


def test_momentum_schedule() -> None:
    objective = InfoNCE(TinyEncoder(), momentum=0.99, momentum_end=1.0)
    assert objective.momentum_at(0, 100) == pytest.approx(0.99)
    assert objective.momentum_at(100, 100) == pytest.approx(1.0)
    assert InfoNCE(TinyEncoder()).momentum_at(50, 100) == 0.99


def test_objective_without_teacher_and_koleo() -> None:
    objective = InfoNCE(TinyEncoder(), momentum_teacher=False, koleo_weight=0.0, projector_hidden_dim=16)
    assert objective.teacher is None
    out = objective(BATCH)
    assert set(out) == {"loss", "contrastive"}
    out["loss"].backward()
    assert torch.isfinite(objective.encoder.lin.weight.grad).all()
    objective.on_step_end(1, 10)  # no teacher: nothing to do


def test_subject_exclusion_is_used_by_the_objective() -> None:
    torch.manual_seed(0)
    objective = InfoNCE(TinyEncoder(), momentum_teacher=False, koleo_weight=0.0).eval()
    with_subjects = objective(BATCH)["loss"].item()
    objective.exclude_same_subject = False
    without = objective(BATCH)["loss"].item()
    assert with_subjects != without


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"temperature": -0.1}, "objective.temperature"),
        ({"temperature": 0.0}, "objective.temperature"),
        ({"projector_dim": 0}, "objective.projector_dim"),
        ({"projector_hidden_dim": -3}, "objective.projector_hidden_dim"),
        ({"momentum": 1.5}, "objective.momentum"),
        ({"koleo_weight": -1.0}, "objective.koleo_weight"),
    ],
)
def test_bad_hyper_parameters_raise_config_error(kwargs: dict, option: str) -> None:
    with pytest.raises(ConfigError) as info:
        InfoNCE(TinyEncoder(), **kwargs)
    assert str(info.value).startswith(option + ":") and "\n" not in str(info.value)
