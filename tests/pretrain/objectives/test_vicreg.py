"""VICReg against an explicit float64 loop reference (values and gradients), collapse and bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pretrain.config import ConfigError
from pretrain.objectives.vicreg import VICReg, VICRegLoss
from tests.pretrain.objectives.finite_differences import numeric_grad
from tests.pretrain.objectives.tiny_encoder import TinyEncoder


def vicreg_ref(z_a: np.ndarray, z_b: np.ndarray, inv: float, var: float, cov: float, eps: float) -> float:
    n, d = z_a.shape
    invariance = sum((z_a[i, j] - z_b[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(z: np.ndarray) -> tuple[float, float]:
        means = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        c = np.zeros((d, d))
        for p in range(d):
            for q in range(d):
                c[p, q] = sum((z[i, p] - means[p]) * (z[i, q] - means[q]) for i in range(n)) / (n - 1)
        hinge = sum(max(0.0, 1.0 - math.sqrt(c[j, j] + eps)) for j in range(d)) / d
        off = sum(c[p, q] ** 2 for p in range(d) for q in range(d) if p != q) / d
        return hinge, off

    va, ca = var_cov(z_a)
    vb, cb = var_cov(z_b)
    return inv * invariance + var * (va + vb) / 2 + cov * (ca + cb)


@pytest.mark.parametrize("scale", [0.3, 2.0])  # std below 1 (hinge active) and above 1 (hinge off)
def test_vicreg_matches_reference_value_and_gradient(scale: float) -> None:
    rng = np.random.default_rng(3)
    z_a = scale * rng.normal(size=(6, 4))
    z_b = z_a + 0.5 * scale * rng.normal(size=(6, 4))
    weights = {"inv": 25.0, "var": 25.0, "cov": 1.0, "eps": 1e-4}
    ta, tb = torch.tensor(z_a, requires_grad=True), torch.tensor(z_b, requires_grad=True)
    loss = VICRegLoss(**weights)(ta, tb)
    assert loss.item() == pytest.approx(vicreg_ref(z_a, z_b, **weights), rel=1e-10)
    ga, gb = torch.autograd.grad(loss, (ta, tb))
    for grad, z in ((ga, z_a), (gb, z_b)):
        expected = numeric_grad(lambda: vicreg_ref(z_a, z_b, **weights), z)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_terms_are_unweighted_and_weighted_sum_is_the_loss() -> None:
    z_a, z_b = torch.randn(2, 10, 5, dtype=torch.float64).unbind(0)
    loss_fn = VICRegLoss(inv=2.0, var=3.0, cov=5.0)
    t = loss_fn.terms(z_a, z_b)
    assert loss_fn(z_a, z_b).item() == pytest.approx(
        2.0 * t["invariance"].item() + 3.0 * t["variance"].item() + 5.0 * t["covariance"].item(), rel=1e-12
    )


def test_collapsed_embeddings_make_variance_term_maximal() -> None:
    z = torch.full((16, 8), -2.5)
    terms = VICRegLoss(eps=1e-4).terms(z, z)
    assert terms["variance"].item() == pytest.approx(1.0 - math.sqrt(1e-4), rel=1e-6)  # its maximum
    assert terms["invariance"].item() == 0.0
    assert terms["covariance"].item() == 0.0
    spread = VICRegLoss(eps=1e-4).terms(torch.randn(16, 8), torch.randn(16, 8))
    assert spread["variance"].item() < terms["variance"].item()


def test_objective_forward_backward() -> None:
    torch.manual_seed(0)
    objective = VICReg(TinyEncoder(), projector_dim=16)
    out = objective({"views": torch.randn(2, 8, 2, 12)})
    assert set(out) == {"loss", "invariance", "variance", "covariance"}
    out["loss"].backward()
    assert torch.isfinite(objective.encoder.lin.weight.grad).all()
    # A list of views (e.g. point or graph batches) works as well as a [V, B, ...] tensor.
    views = torch.randn(2, 8, 2, 12)
    assert torch.isfinite(objective({"views": [views[0], views[1]]})["loss"])


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"projector_dim": 0}, "objective.projector_dim"), ({"var": -1.0}, "objective.var"),
     ({"eps": 0.0}, "objective.eps")],
)
def test_bad_hyper_parameters_raise_config_error(kwargs: dict, option: str) -> None:
    with pytest.raises(ConfigError) as info:
        VICReg(TinyEncoder(), **kwargs)
    assert str(info.value).startswith(option + ":") and "\n" not in str(info.value)
