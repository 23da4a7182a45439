"""ECG-JEPA masks: keep 15-25 % of tokens, masked tokens in contiguous runs of >= 10, per-sample seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.masking import _composition, batch_block_masks, block_mask_1d


def runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a boolean vector."""
    out, n = [], 0
    for v in mask:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out + ([n] if n else [])


def test_hand_case_exact_layout():
    keep, masked = block_mask_1d(12, 2, 10, np.random.default_rng(0))
    # 10 masked tokens must form one block of exactly 10; 2 visible tokens around it
    m = np.zeros(12, bool)
    m[masked] = True
    assert runs(m) == [10]
    assert len(keep) == 2 and set(keep) | set(masked) == set(range(12)) and not set(keep) & set(masked)


@pytest.mark.parametrize("seed", range(200))
def test_statistics_over_many_draws(seed):
    rng = np.random.default_rng(seed)
    n_keep = int(rng.integers(30, 51))  # 15-25 % of 200
    keep, masked = block_mask_1d(200, n_keep, 10, rng)
    assert len(keep) == n_keep and len(masked) == 200 - n_keep
    m = np.zeros(200, bool)
    m[masked] = True
    assert all(r >= 10 for r in runs(m))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(masked) > 0)


def test_composition_is_uniform_over_compositions():
    # writing 2 as an ordered sum of 3 parts: 6 compositions, each ~1/6
    rng = np.random.default_rng(1)
    counts: dict[tuple, int] = {}
    for _ in range(6000):
        c = tuple(_composition(2, 3, rng))
        assert sum(c) == 2 and min(c) >= 0
        counts[c] = counts.get(c, 0) + 1
    assert len(counts) == 6
    assert all(abs(v / 6000 - 1 / 6) < 0.03 for v in counts.values())


def test_batch_masks_keep_fraction_and_seed_determinism():
    seeds = torch.tensor([11, 12, 13, 14])
    fracs = []
    for step_seed in range(300):
        keep, masked = batch_block_masks(seeds, step_seed, 200, (0.15, 0.25), 10)
        assert keep.shape[0] == 4 and keep.shape[1] + masked.shape[1] == 200
        fracs.append(keep.shape[1] / 200)
    assert 0.15 <= min(fracs) < 0.16 and 0.24 < max(fracs) <= 0.25
    assert abs(np.mean(fracs) - 0.20) < 0.01
    # a sample's mask depends on its own seed only: splitting the batch changes nothing
    k_all, _ = batch_block_masks(seeds, 5, 200, (0.15, 0.25), 10)
    k_half, _ = batch_block_masks(seeds[2:], 5, 200, (0.15, 0.25), 10)
    assert torch.equal(k_all[2:], k_half)
    assert not torch.equal(k_all[0], k_all[1])


def test_impossible_request_is_refused():
    with pytest.raises(ValueError, match="cannot keep"):
        block_mask_1d(20, 15, 10, np.random.default_rng(0))
