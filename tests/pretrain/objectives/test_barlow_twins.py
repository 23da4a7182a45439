"""Barlow Twins and Mixed Barlow Twins against explicit float64 loop references (values and gradients)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from pretrain.config import ConfigError
from pretrain.objectives.barlow_twins import BarlowTwins, BarlowTwinsLoss, MixedBarlowTwinsLoss
from tests.pretrain.objectives.finite_differences import numeric_grad
from tests.pretrain.objectives.tiny_encoder import TinyEncoder

EPS = 1e-5


def standardise_ref(z: np.ndarray) -> np.ndarray:
    n, d = z.shape
    out = np.zeros_like(z)
    for j in range(d):
        mean = sum(z[i, j] for i in range(n)) / n
        var = sum((z[i, j] - mean) ** 2 for i in range(n)) / n
        for i in range(n):
            out[i, j] = (z[i, j] - mean) / np.sqrt(var + EPS)
    return out


def cross_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, d = a.shape
    c = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            c[i, j] = sum(a[k, i] * b[k, j] for k in range(n)) / n
    return c


def barlow_ref(z_a: np.ndarray, z_b: np.ndarray, lam: float) -> float:
    c = cross_ref(standardise_ref(z_a), standardise_ref(z_b))
    d = c.shape[0]
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lam * off


def mixed_ref(z1, z2, zm, perm, alpha, lam: float, scale: float) -> float:
    s1, s2, sm = standardise_ref(z1), standardise_ref(z2), standardise_ref(zm)
    s2p = s2[perm]
    c_m1 = cross_ref(sm, s1)
    t_1 = alpha * cross_ref(s1, s1) + (1 - alpha) * cross_ref(s2p, s1)
    c_m2 = cross_ref(sm, s2)
    t_2 = alpha * cross_ref(s1, s2) + (1 - alpha) * cross_ref(s2p, s2)
    mix = ((c_m1 - t_1) ** 2).sum() + ((c_m2 - t_2) ** 2).sum()
    return barlow_ref(z1, z2, lam) + scale * lam * mix


def test_barlow_twins_matches_reference_value_and_gradient() -> None:
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    z_b += 0.8 * z_a  # correlated views, so that the diagonal is not ~0
    ta = torch.tensor(z_a, requires_grad=True)
    tb = torch.tensor(z_b, requires_grad=True)
    lam = 0.3
    loss = BarlowTwinsLoss(lambda_=lam)(ta, tb)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(barlow_ref(z_a, z_b, lam), rel=1e-10)
    ga, gb = torch.autograd.grad(loss, (ta, tb))
    np.testing.assert_allclose(ga.numpy(), numeric_grad(lambda: barlow_ref(z_a, z_b, lam), z_a), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gb.numpy(), numeric_grad(lambda: barlow_ref(z_a, z_b, lam), z_b), rtol=1e-5, atol=1e-7)


def test_barlow_twins_identical_decorrelated_views_have_zero_loss() -> None:
    # Columns with zero mean, equal variance and zero cross-correlation: C = I exactly.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert BarlowTwinsLoss(lambda_=1.0, eps=1e-12)(z, z).item() == pytest.approx(0.0, abs=1e-10)


def test_mixed_barlow_twins_matches_reference_value_and_gradient() -> None:
    rng = np.random.default_rng(1)
    z1, z2, zm = (rng.normal(size=(5, 3)) for _ in range(3))
    perm = np.array([2, 0, 4, 1, 3])
    alpha, lam, scale = 0.35, 0.2, 4.0
    tensors = [torch.tensor(z, requires_grad=True) for z in (z1, z2, zm)]
    loss_fn = MixedBarlowTwinsLoss(lambda_=lam, mix_scale=scale)
    loss = loss_fn(*tensors, torch.tensor(perm), alpha)
    assert loss.item() == pytest.approx(mixed_ref(z1, z2, zm, perm, alpha, lam, scale), rel=1e-10)
    grads = torch.autograd.grad(loss, tensors)
    for g, z in zip(grads, (z1, z2, zm)):
        expected = numeric_grad(lambda: mixed_ref(z1, z2, zm, perm, alpha, lam, scale), z)
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_mixed_barlow_twins_per_sample_alpha_equals_scalar_alpha() -> None:
    z1, z2, zm = torch.randn(3, 8, 4, dtype=torch.float64).unbind(0)
    perm = torch.randperm(8)
    loss_fn = MixedBarlowTwinsLoss()
    scalar = loss_fn(z1, z2, zm, perm, 0.25)
    vector = loss_fn(z1, z2, zm, perm, torch.full((8,), 0.25, dtype=torch.float64))
    assert vector.item() == pytest.approx(scalar.item(), rel=1e-12)


def test_collapsed_embeddings_give_diagonal_term_d() -> None:
    d = 7
    z = torch.full((16, d), 3.0)
    terms = BarlowTwinsLoss().terms(z, z)
    assert terms["on_diagonal"].item() == pytest.approx(d)
    assert terms["off_diagonal"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("mixed", [False, True])
def test_objective_forward_backward(mixed: bool) -> None:
    torch.manual_seed(0)
    objective = BarlowTwins(TinyEncoder(), projector_dim=16, mixed=mixed)
    out = objective({"views": torch.randn(2, 8, 2, 12), "signal": torch.randn(8, 2, 12), "subject": ["a"] * 8})
    assert set(out) == {"loss", "on_diagonal", "off_diagonal"} | ({"mix"} if mixed else set())
    out["loss"].backward()
    assert objective.encoder.lin.weight.grad is not None
    assert torch.isfinite(objective.encoder.lin.weight.grad).all()
    assert objective.embed({"signal": torch.randn(3, 2, 12)}).shape == (3, 6)


def test_objective_with_collapsed_encoder_reports_diagonal_d() -> None:
    objective = BarlowTwins(TinyEncoder(constant=True), projector_dim=16)
    out = objective({"views": torch.randn(2, 8, 2, 12)})
    # A constant encoder makes the projector output constant over the batch (BatchNorm of a constant is 0).
    assert out["on_diagonal"].item() == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"lambda_": -0.1}, "objective.lambda_"), ({"projector_dim": 0}, "objective.projector_dim"),
     ({"mixed": True, "mix_scale": -1.0}, "objective.mix_scale")],
)
def test_bad_hyper_parameters_raise_config_error(kwargs: dict, option: str) -> None:
    with pytest.raises(ConfigError) as info:
        BarlowTwins(TinyEncoder(), **kwargs)
    message = str(info.value)
    assert message.startswith(option + ":") and "\n" not in message
