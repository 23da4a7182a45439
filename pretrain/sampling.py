"""The deterministic sample stream of the training loop.

The sample at stream position ``p`` is ``perm_epoch[p % n]`` with its own seed ``sample_seed(seed, p)``, and each
process takes its slice of every global batch: a run with 2 processes sees exactly the batches of a 1-process run,
and a resumed run continues the stream where it stopped (:class:`SeededBatches`). :class:`KeyedDataset` hands each
sample its seed, from which objectives draw per-sample randomness (masks, crops).
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Iterator, Mapping

import numpy as np
from torch.utils.data import Dataset

from pretrain.config import ConfigError

__all__ = ["KeyedDataset", "SeededBatches", "sample_seed"]


def sample_seed(seed: int, position: int) -> int:
    """A 62-bit seed for the sample at stream ``position`` (independent streams via SeedSequence)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1, np.uint64)[0] >> np.uint64(2))


class SeededBatches:
    """Infinite stream of this process's share of each global batch, as ``(index, seed)`` keys.

    Global micro-batch ``m`` covers stream positions ``[m * B, (m + 1) * B)``; process ``r`` of ``W`` takes the
    ``r``-th contiguous slice of ``B / W`` positions, yielded as ``chunks`` consecutive memory micro-batches.
    Epoch ``e`` uses the permutation ``rng(seed, e)``.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1, start_micro_step: int = 0,
                 chunks: int = 1):
        if global_batch % world:
            raise ConfigError(f"train.batch_size: {global_batch} is not divisible by the {world} processes")
        if (global_batch // world) % chunks:
            raise ConfigError(f"train.micro_batch: {chunks} micro-batches do not divide {global_batch // world} samples")
        self.n, self.b, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.start, self.chunks = start_micro_step, chunks
        self._perm_epoch, self._perm = -1, np.arange(0)

    def _index(self, position: int) -> int:
        epoch = position // self.n
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return int(self._perm[position % self.n])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per = self.b // self.world
        size = per // self.chunks  # memory micro-batches: the same positions, in consecutive slices
        m = self.start
        while True:
            first = m * self.b + self.rank * per
            for c in range(self.chunks):
                lo = first + c * size
                yield [(self._index(p), sample_seed(self.seed, p)) for p in range(lo, lo + size)]
            m += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return sys.maxsize


class KeyedDataset(Dataset):
    """Adds the sample's seed to each item so objectives can draw per-sample randomness (masks) from it.

    Dictionary samples get a ``"seed"`` key; graph samples (torch_geometric ``Data``) a ``seed`` attribute on a
    shallow copy, so that batching them gives ``batch.seed`` int64[G].
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        sample = self.base[key]
        if not isinstance(sample, Mapping):  # a torch_geometric Data: dict() would turn it into a plain mapping
            item = copy.copy(sample)
            item.seed = key[1]
            return item
        item = dict(sample)
        item["seed"] = key[1]
        return item
