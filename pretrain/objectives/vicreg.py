"""VICReg (Bardes, Ponce, LeCun, ICLR 2022): variance-invariance-covariance regularisation."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.heads import MLPHead
from pretrain.config import ConfigError
from pretrain.distributed import full_precision, gather_with_grad
from pretrain.objectives.base import Objective

__all__ = ["VICReg", "VICRegLoss"]


class VICRegLoss(nn.Module):
    """VICReg loss (Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022).

    For embeddings ``z_a``, ``z_b`` of N samples and D features:

        I = mean_{n,d} (z_a - z_b)^2                                         (invariance, MSE)
        V = 1/2 [mean_d relu(1 - s_a,d) + mean_d relu(1 - s_b,d)],  s_d = sqrt(Var_n(z_d) + eps)
        C = 1/D sum_{i != j} Cov(z_a)_ij^2 + 1/D sum_{i != j} Cov(z_b)_ij^2
        L = inv * I + var * V + cov * C

    with unbiased variances and covariances (divided by N - 1). Under DDP, I is the mean over the local
    batch (its mean over processes is the global mean) and V, C are computed on embeddings gathered over all
    processes with gradients. A collapsed encoder (constant output) has V = 1 - sqrt(eps), its maximum.

    Args:
        inv: invariance weight (paper: 25).
        var: variance weight (paper: 25).
        cov: covariance weight (paper: 1).
        eps: added to the variance inside the square root (paper: 1e-4).
        gather: gather embeddings across processes for V and C.

    Shapes: ``z_a``, ``z_b``: ``[n, D]``; returns a scalar.

    >>> loss_fn = VICRegLoss()
    >>> loss_fn(torch.randn(32, 16), torch.randn(32, 16)).shape
    torch.Size([])
    """

    def __init__(
        self, inv: float = 25.0, var: float = 25.0, cov: float = 1.0, eps: float = 1e-4, gather: bool = True
    ) -> None:
        super().__init__()
        for option, value in (("inv", inv), ("var", var), ("cov", cov)):
            if not value >= 0:
                raise ConfigError(f"objective.{option}: must be >= 0, got {value}")
        if not eps > 0:
            raise ConfigError(f"objective.eps: must be > 0, got {eps}")
        self.inv = float(inv)
        self.var = float(var)
        self.cov = float(cov)
        self.eps = float(eps)
        self.gather = gather

    def _variance_covariance(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = z.shape
        if n < 2:
            raise ValueError(f"VICReg needs at least 2 samples in the (global) batch, got {n}")
        centred = z - z.mean(dim=0)
        with torch.autocast(z.device.type, enabled=False):
            cov = centred.T @ centred / (n - 1)
        std = torch.sqrt(torch.diagonal(cov) + self.eps)
        variance = F.relu(1.0 - std).mean()
        off_diagonal = (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d
        return variance, off_diagonal

    def terms(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted terms ``invariance`` (I), ``variance`` (V) and ``covariance`` (C)."""
        z_a, z_b = full_precision(z_a), full_precision(z_b)
        invariance = F.mse_loss(z_a, z_b)
        if self.gather:
            z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)
        var_a, cov_a = self._variance_covariance(z_a)
        var_b, cov_b = self._variance_covariance(z_b)
        return {"invariance": invariance, "variance": 0.5 * (var_a + var_b), "covariance": cov_a + cov_b}

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from :meth:`terms`: ``inv * I + var * V + cov * C``."""
        return self.inv * terms["invariance"] + self.var * terms["variance"] + self.cov * terms["covariance"]

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return self.weighted(self.terms(z_a, z_b))


class VICReg(Objective):
    """VICReg objective: encoder + expander ``MLPHead(embed_dim, [w, w], w)`` trained with
    :class:`VICRegLoss` on two augmented views.

    Args (the YAML ``objective:`` options):
        encoder: a module with ``embed_dim`` and ``embed(x) -> [B, embed_dim]``.
        projector_dim: expander width ``w`` (the paper uses 8192; 2048 keeps CPU runs small).
        inv, var, cov: loss weights (25, 25, 1).
        eps: variance epsilon.
        gather: gather embeddings across processes for the variance and covariance terms.

    Options are keyword arguments; the registry rejects keys that are not in the signature.

    Batch: ``batch["views"]``: a tensor ``[2, B, ...]`` or a sequence of two encoder inputs.

    >>> class Tiny(nn.Module):
    ...     embed_dim = 8
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2 * 16, 8)
    ...     def embed(self, x):
    ...         return self.lin(x.flatten(1))
    >>> out = VICReg(Tiny(), projector_dim=32)({"views": torch.randn(2, 4, 2, 16)})
    >>> sorted(out)
    ['covariance', 'invariance', 'loss', 'variance']
    """

    name: ClassVar[str] = "vicreg"
    views: ClassVar[int] = 2
    sample_kinds: ClassVar[tuple[str, ...]] = ("signal", "image", "points", "graph")
    batch_loss: ClassVar[bool] = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        projector_dim: int = 2048,
        inv: float = 25.0,
        var: float = 25.0,
        cov: float = 1.0,
        eps: float = 1e-4,
        gather: bool = True,
    ) -> None:
        super().__init__(encoder)
        if isinstance(projector_dim, bool) or not isinstance(projector_dim, int) or projector_dim <= 0:
            raise ConfigError(f"objective.projector_dim: must be a positive integer, got {projector_dim!r}")
        self.loss_fn = VICRegLoss(inv=inv, var=var, cov=cov, eps=eps, gather=gather)
        self.projector = MLPHead(int(encoder.embed_dim), [projector_dim, projector_dim], projector_dim)

    def project(self, x: Any) -> torch.Tensor:
        return self.projector(self.encoder.embed(x))

    def embeddings(self, batch: dict[str, Any], targets: bool = True) -> dict[str, torch.Tensor]:
        """The encoder's features of both views; the expander (batch-normalised) runs in :meth:`loss_from`."""
        views = batch["views"]
        return {"h_a": self.encoder.embed(views[0]), "h_b": self.encoder.embed(views[1])}

    def loss_from(self, rows: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = self.loss_fn.terms(self.projector(rows["h_a"]), self.projector(rows["h_b"]))
        return {"loss": self.loss_fn.weighted(terms), **{k: v.detach() for k, v in terms.items()}}
