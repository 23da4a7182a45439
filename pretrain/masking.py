"""Token masks for masked-prediction objectives, drawn from per-sample seeds so that a batch's masks do not
depend on how the batch is split across processes, and a resumed run draws the same masks again."""

from __future__ import annotations

import numpy as np
import torch


def block_mask_1d(n_tokens: int, n_keep: int, min_block: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_tokens`` positions into ``n_keep`` visible ones and masked ones lying in contiguous runs of
    at least ``min_block`` tokens (ECG-JEPA's masking: keep 15-25 %, mask blocks of >= 10 patches).

    The masked total ``M = n_tokens - n_keep`` is cut into ``b`` blocks (``b`` uniform in
    ``1..M // min_block``), each ``min_block`` plus a random share of the remainder; the visible tokens are
    spread over the ``b + 1`` gaps around them. Returns sorted (keep, masked) int64 index arrays.
    """
    n_mask = n_tokens - n_keep
    if n_keep < 1 or n_mask < min_block:
        raise ValueError(f"cannot keep {n_keep} of {n_tokens} tokens with masked blocks of >= {min_block}")
    n_blocks = int(rng.integers(1, n_mask // min_block + 1))
    block_len = min_block + _composition(n_mask - n_blocks * min_block, n_blocks, rng)
    gaps = _composition(n_keep, n_blocks + 1, rng)
    is_masked = np.zeros(n_tokens, dtype=bool)
    pos = 0
    for g, b in zip(gaps[:-1], block_len):
        pos += g
        is_masked[pos:pos + b] = True
        pos += b
    return np.flatnonzero(~is_masked), np.flatnonzero(is_masked)


def _composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random way of writing ``total`` as an ordered sum of ``parts`` non-negative integers."""
    cuts = np.sort(rng.choice(total + parts - 1, size=parts - 1, replace=False)) if parts > 1 else np.zeros(0, int)
    edges = np.concatenate([[-1], cuts, [total + parts - 1]])
    return (np.diff(edges) - 1).astype(np.int64)


def batch_block_masks(seeds: torch.Tensor | list[int], step_seed: int, n_tokens: int, keep_range: tuple[float, float],
                      min_block: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for a batch: one visible-token count for the whole batch (from ``step_seed``, so every process
    of a step agrees on it and tensors stack), and each sample's layout from its own seed.

    Returns keep int64[B, K] and masked int64[B, N - K].
    """
    lo, hi = keep_range
    u = np.random.default_rng([int(step_seed), stream, 0x4A45]).uniform(lo, hi)
    n_keep = int(np.clip(round(u * n_tokens), 1, n_tokens - min_block))
    keeps, masks = [], []
    for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds):
        k, m = block_mask_1d(n_tokens, n_keep, min_block, np.random.default_rng([int(s), stream, 0x4D53]))
        keeps.append(k)
        masks.append(m)
    return torch.from_numpy(np.stack(keeps)), torch.from_numpy(np.stack(masks))
