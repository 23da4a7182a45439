"""Label-free monitors of an embedding: RankMe (Garrido et al. 2023), the per-dimension std of normalised
embeddings (SimSiam's collapse detector) and the collapse warning built on them. A leaf module: the objectives and the
loop log these during training, the report reads them back."""

from __future__ import annotations

import torch

__all__ = ["collapsed", "embedding_std", "rankme"]


def rankme(z: torch.Tensor, eps: float = 1e-5) -> float:
    """RankMe = exp(-sum_k p_k log p_k) with p_k = s_k / ||s||_1 + eps, s the singular values of z float[N, K].

    A collapsed (constant) embedding gives ~1; an isotropic one gives ~min(N, K).

    >>> round(rankme(torch.eye(8)), 3)
    7.999
    """
    s = torch.linalg.svdvals(z.detach().double())
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings (collapse -> 0,
    healthy -> about 1/sqrt(K)); the collapse detector of SimSiam."""
    zn = torch.nn.functional.normalize(z.detach().double(), dim=1)
    return float(zn.std(dim=0).mean())


def collapsed(rank: float, best_rank: float, floor: float = 1.1, drop: float = 0.25) -> bool:
    """The collapse warning: RankMe near 1 (below ``floor``; a constant encoder gives exactly 1) or fallen below
    ``drop`` x its best value so far. Mean-pooled transformer features share one dominant direction, so a healthy
    encoder can sit at RankMe ~1.4 on raw (uncentred) embeddings: the floor is kept close to 1."""
    return rank < max(floor, drop * best_rank)
