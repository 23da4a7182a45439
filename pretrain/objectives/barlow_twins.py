"""Barlow Twins (Zbontar et al., ICML 2021) and its Mixed Barlow Twins regulariser (Bandara et al., 2023).

Two losses on projector outputs and the objective that trains an encoder with them. Under DDP the batch
statistics (column means and variances, cross-correlations) are sums over every process through the
autograd-aware collectives of :mod:`pretrain.distributed`, so W processes optimise exactly the loss of one
process on the concatenated batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from models.heads import MLPHead
from pretrain.config import ConfigError
from pretrain.distributed import all_reduce_sum_with_grad, full_precision, world_size
from pretrain.objectives.base import Objective

__all__ = ["BarlowTwins", "BarlowTwinsLoss", "MixedBarlowTwinsLoss"]


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins redundancy-reduction loss (Zbontar et al., "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", ICML 2021).

    Each column of ``z_a`` and ``z_b`` is standardised with the statistics of the whole (global) batch of
    N samples, as the paper's non-affine BatchNorm does (biased variance, ``eps`` inside the square root):
    ``z^ = (z - mean) / sqrt(var + eps)``. Then

        C = z^_a^T z^_b / N                                  (D x D cross-correlation)
        L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

    Under DDP, N is the global batch and C the sum over processes of the local ``z^_a^T z^_b`` divided by N
    (equivalently the all-reduced per-process C divided by the world size), all through autograd-aware
    all-reduces; every process then holds the same loss.

    Args:
        lambda_: weight of the off-diagonal (redundancy) term; the paper uses 5e-3 with D = 8192.
        gather: use global batch statistics under DDP (no effect on one process).
        eps: added to the variance when standardising.

    Shapes: ``z_a``, ``z_b``: ``[n, D]`` (the local batch); returns a scalar.

    >>> loss_fn = BarlowTwinsLoss(lambda_=5e-3)
    >>> z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
    >>> loss_fn(z_a, z_b).shape
    torch.Size([])
    """

    def __init__(self, lambda_: float = 5e-3, gather: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if not lambda_ >= 0:
            raise ConfigError(f"objective.lambda_: must be >= 0, got {lambda_}")
        if not eps > 0:
            raise ConfigError(f"objective.eps: must be > 0, got {eps}")
        self.lambda_ = float(lambda_)
        self.gather = gather
        self.eps = float(eps)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum_with_grad(x) if self.gather else x

    def _global_rows(self, n: int) -> int:
        return n * (world_size() if self.gather else 1)

    def standardise(self, *zs: torch.Tensor) -> list[torch.Tensor]:
        """Column-standardise each ``[n, D]`` tensor with its own global batch mean and biased variance."""
        z = torch.stack([full_precision(t) for t in zs])  # [k, n, D]: one all-reduce for all of them
        n = self._global_rows(z.shape[1])
        mean = self._reduce(z.sum(dim=1, keepdim=True)) / n
        centred = z - mean
        var = self._reduce(centred.pow(2).sum(dim=1, keepdim=True)) / n
        return list((centred / torch.sqrt(var + self.eps)).unbind(0))

    def cross_correlation(self, za_std: torch.Tensor, zb_std: torch.Tensor) -> torch.Tensor:
        """``za_std^T zb_std / N`` over the global batch, for already standardised inputs ``[n, D]``."""
        with torch.autocast(za_std.device.type, enabled=False):  # a bf16 D x D sum loses the diagonal
            product = za_std.T @ zb_std
        return self._reduce(product) / self._global_rows(za_std.shape[0])

    def terms(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted terms: ``on_diagonal`` = sum_i (1 - C_ii)^2, ``off_diagonal`` = sum_{i!=j} C_ij^2."""
        za_std, zb_std = self.standardise(z_a, z_b)
        return self._correlation_terms(self.cross_correlation(za_std, zb_std))

    @staticmethod
    def _correlation_terms(c: torch.Tensor) -> dict[str, torch.Tensor]:
        diagonal = torch.diagonal(c)
        on_diagonal = (1.0 - diagonal).pow(2).sum()
        off_diagonal = c.pow(2).sum() - diagonal.pow(2).sum()
        return {"on_diagonal": on_diagonal, "off_diagonal": off_diagonal}

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from :meth:`terms`: ``on_diagonal + lambda * off_diagonal``."""
        return terms["on_diagonal"] + self.lambda_ * terms["off_diagonal"]

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return self.weighted(self.terms(z_a, z_b))


class MixedBarlowTwinsLoss(BarlowTwinsLoss):
    """Barlow Twins plus the Mixed Barlow Twins regulariser (Bandara, Patel et al., "Guarding Barlow Twins
    Against Overfitting with Mixed Samples", 2023).

    The caller encodes a mixed input ``y_m = a * y_1 + (1 - a) * y_2[perm]`` (``a ~ Beta(1, 1)``) into
    ``z_m``. With every ``z`` column-standardised over the global batch and N the global batch size:

        C_m1 = z_m^T z_1 / N,   T_1 = a z_1^T z_1 / N + (1 - a) z_2[perm]^T z_1 / N
        C_m2 = z_m^T z_2 / N,   T_2 = a z_1^T z_2 / N + (1 - a) z_2[perm]^T z_2 / N
        L    = L_BT + s * lambda * (||C_m1 - T_1||_F^2 + ||C_m2 - T_2||_F^2)

    i.e. the cross-correlations of the mixed sample must be the same mixture of the cross-correlations of
    its parts. ``lambda`` is the Barlow Twins off-diagonal weight; the paper uses lambda = 1/128 with s = 4 on
    CIFAR. ``alpha`` may also be a tensor ``[n]`` (one coefficient per sample; e.g. one per process).
    Under DDP, ``perm`` permutes the local batch.

    Args:
        lambda_: Barlow Twins off-diagonal weight, also scaling the regulariser.
        mix_scale: ``s``.
        gather: use global batch statistics under DDP.
        eps: added to the variance when standardising.

    Shapes: ``z_a``, ``z_b``, ``z_mix``: ``[n, D]``; ``perm``: int64 ``[n]``; ``alpha``: float or ``[n]``.

    >>> loss_fn = MixedBarlowTwinsLoss(lambda_=1 / 128, mix_scale=4.0)
    >>> z1, z2, zm = torch.randn(3, 32, 16).unbind(0)
    >>> loss_fn(z1, z2, zm, torch.randperm(32), 0.3).shape
    torch.Size([])
    """

    def __init__(
        self, lambda_: float = 5e-3, mix_scale: float = 4.0, gather: bool = True, eps: float = 1e-5
    ) -> None:
        super().__init__(lambda_=lambda_, gather=gather, eps=eps)
        if not mix_scale >= 0:
            raise ConfigError(f"objective.mix_scale: must be >= 0, got {mix_scale}")
        self.mix_scale = float(mix_scale)

    def terms(  # type: ignore[override]
        self,
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        z_mix: torch.Tensor,
        perm: torch.Tensor,
        alpha: float | torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms: ``on_diagonal``, ``off_diagonal`` and ``mix`` = the two squared Frobenius norms."""
        za_std, zb_std, zm_std = self.standardise(z_a, z_b, z_mix)
        out = self._correlation_terms(self.cross_correlation(za_std, zb_std))
        a = torch.as_tensor(alpha, dtype=za_std.dtype, device=za_std.device)
        if a.ndim == 1:
            a = a[:, None]
        # C_m - T = (z_m - a z_1 - (1 - a) z_2[perm])^T z / N for z = z_1, z_2: one residual for both.
        residual = zm_std - a * za_std - (1.0 - a) * zb_std[perm]
        mix_1 = self.cross_correlation(residual, za_std)
        mix_2 = self.cross_correlation(residual, zb_std)
        out["mix"] = mix_1.pow(2).sum() + mix_2.pow(2).sum()
        return out

    def forward(  # type: ignore[override]
        self,
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        z_mix: torch.Tensor,
        perm: torch.Tensor,
        alpha: float | torch.Tensor,
    ) -> torch.Tensor:
        return self.weighted(self.terms(z_a, z_b, z_mix, perm, alpha))

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from :meth:`terms`: ``on_diagonal + lambda * (off_diagonal + s * mix)``."""
        return terms["on_diagonal"] + self.lambda_ * (terms["off_diagonal"] + self.mix_scale * terms["mix"])


class BarlowTwins(Objective):
    """Barlow Twins objective: encoder + projector ``MLPHead(embed_dim, [w, w], w)`` trained with
    :class:`BarlowTwinsLoss` on two augmented views, optionally with the Mixed Barlow Twins regulariser.

    With ``mixed=True`` a third forward pass encodes ``y_m = a y_1 + (1 - a) y_2[perm]``, ``a ~ U(0, 1)``
    (= Beta(1, 1)), ``perm`` a random permutation of the local batch; this needs tensor views (signals,
    images).

    Args (the YAML ``objective:`` options):
        encoder: a module with ``embed_dim`` and ``embed(x) -> [B, embed_dim]``.
        projector_dim: projector width ``w`` (the paper uses 8192; 2048 keeps CPU runs small).
        lambda_: off-diagonal weight.
        mixed: add the Mixed Barlow Twins regulariser.
        mix_scale: its scale ``s``.
        gather: global batch statistics under DDP.

    Options are keyword arguments; the registry rejects keys that are not in the signature.

    Batch: ``batch["views"]``: a tensor ``[2, B, ...]`` or a sequence of two encoder inputs.

    >>> class Tiny(nn.Module):
    ...     embed_dim = 8
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2 * 16, 8)
    ...     def embed(self, x):
    ...         return self.lin(x.flatten(1))
    >>> objective = BarlowTwins(Tiny(), projector_dim=32)
    >>> out = objective({"views": torch.randn(2, 4, 2, 16)})
    >>> sorted(out)
    ['loss', 'off_diagonal', 'on_diagonal']
    """

    name: ClassVar[str] = "barlow_twins"
    views: ClassVar[int] = 2
    sample_kinds: ClassVar[tuple[str, ...]] = ("signal", "image", "points", "graph")
    batch_loss: ClassVar[bool] = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        projector_dim: int = 2048,
        lambda_: float = 5e-3,
        mixed: bool = False,
        mix_scale: float = 4.0,
        gather: bool = True,
    ) -> None:
        super().__init__(encoder)
        if isinstance(projector_dim, bool) or not isinstance(projector_dim, int) or projector_dim <= 0:
            raise ConfigError(f"objective.projector_dim: must be a positive integer, got {projector_dim!r}")
        self.mixed = bool(mixed)
        self.loss_fn: BarlowTwinsLoss = (
            MixedBarlowTwinsLoss(lambda_=lambda_, mix_scale=mix_scale, gather=gather)
            if self.mixed
            else BarlowTwinsLoss(lambda_=lambda_, gather=gather)
        )
        self.projector = MLPHead(int(encoder.embed_dim), [projector_dim, projector_dim], projector_dim)
        self.splittable = not self.mixed  # micro-batches (pretrain/micro.py): the mix spans the whole batch

    def project(self, x: Any) -> torch.Tensor:
        return self.projector(self.encoder.embed(x))

    def embeddings(self, batch: dict[str, Any], targets: bool = True) -> dict[str, torch.Tensor]:
        """The encoder's features of the views; the projector (batch-normalised) runs in :meth:`loss_from`."""
        views = batch["views"]
        y1, y2 = views[0], views[1]
        rows = {"h_a": self.encoder.embed(y1), "h_b": self.encoder.embed(y2)}
        if self.mixed:
            if not isinstance(y1, torch.Tensor):
                raise ConfigError("objective.mixed: the Mixed Barlow Twins regulariser needs tensor views")
            # The mix pairs samples across the whole local batch (``perm``), so a mixed run is never split into
            # micro-batches (pretrain/micro.py refuses it); ``perm`` and ``alpha`` travel with the rows.
            n = y1.shape[0]
            perm = torch.randperm(n, device=y1.device)
            alpha = torch.rand((), device=y1.device)
            rows["h_mix"] = self.encoder.embed(alpha * y1 + (1.0 - alpha) * y2[perm])
            rows["perm"], rows["alpha"] = perm, alpha.expand(n)
        return rows

    def loss_from(self, rows: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        z_a, z_b = self.projector(rows["h_a"]), self.projector(rows["h_b"])
        if not self.mixed:
            terms = self.loss_fn.terms(z_a, z_b)
        else:
            assert isinstance(self.loss_fn, MixedBarlowTwinsLoss)
            terms = self.loss_fn.terms(z_a, z_b, self.projector(rows["h_mix"]), rows["perm"], rows["alpha"][0])
        return {"loss": self.loss_fn.weighted(terms), **{k: v.detach() for k, v in terms.items()}}
