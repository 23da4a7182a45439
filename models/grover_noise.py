"""Per-molecule randomness of :class:`models.grover.GTransEncoder`: dropout masks and hop counts drawn from a
counter-based hash of the molecule's seed, so that a molecule's noise does not depend on its batch-mates (a batch
split over W processes trains exactly like the whole batch in one process).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.grover_graph import MoleculeGraph

__all__ = ["SampleNoise", "hash32", "noisy_dropout"]

_M32 = 0xFFFF_FFFF


def hash32(x: Tensor | int) -> Tensor | int:
    """A 32-bit integer hash (``lowbias32``-style xor-shift-multiply) of int64 values, taken modulo 2^32.

    Every product stays below 2^63 (a value below 2^32 times a constant below 2^31), so no int64 overflow occurs on
    any device, and the result is the same on CPU and GPU.
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x297A2D39) & _M32
    return x ^ (x >> 15)


def _seed_key(seeds: Tensor) -> Tensor:
    """int64[G] 32-bit keys of 64-bit seeds (both halves mixed)."""
    s = seeds.long()
    return hash32(hash32(s & _M32) ^ ((s >> 32) & _M32))


class SampleNoise:
    """Dropout masks and hop counts that belong to the molecules, not to the batch.

    The keep/drop decisions of a molecule's tokens (atoms; directed bonds) in a token tensor ``[.., n, C]`` are
    ``rand >= p`` from a generator seeded with a hash of (the molecule's seed, ``call``, the view), ``call`` the
    number of dropout calls made so far in this forward pass: one generator per molecule and call, filling the
    molecule's rows ``[.., n_g, C]`` (5-7x cheaper than hashing every element). Attention weights use a hash of
    (molecule seed, call, head, query position, key position). Kept elements are scaled by ``1 / (1 - p)`` as
    ``nn.Dropout`` does.

    Args:
        seeds: int64[G], one seed per molecule (the training loop's per-sample seeds).
        graph: the batch's :class:`MoleculeGraph`.
        depth_seed: seed of the hop-count generator (shared by every process: the loop's ``step_seed``); ``None``
            draws hop counts from torch's global generator.
    """

    def __init__(self, seeds: Tensor, graph: MoleculeGraph, depth_seed: int | None = None) -> None:
        seeds = torch.as_tensor(seeds, device=graph.atom_batch.device).long().reshape(-1)
        if seeds.numel() != graph.num_graphs:
            raise ValueError(f"seeds: {seeds.numel()} seeds for {graph.num_graphs} molecules")
        self.mol = _seed_key(seeds)
        self.rows = {"atom": self._row_ranges(graph.atom_batch, graph.num_graphs),
                     "bond": self._row_ranges(graph.bond_batch, graph.num_graphs)}
        self.salts = {"atom": 0x61746F6D, "bond": 0x626F6E64}
        self.calls = 0
        self.generator: torch.Generator | None = None
        if depth_seed is not None:
            self.generator = torch.Generator().manual_seed(int(depth_seed) & 0x7FFF_FFFF_FFFF_FFFF)

    @staticmethod
    def _row_ranges(index: Tensor, num_graphs: int) -> list[tuple[int, int]]:
        """``[(first, end)]`` of each molecule's rows (tokens are grouped by molecule, in molecule order)."""
        ends = torch.bincount(index, minlength=num_graphs).cumsum(0).tolist() if index.numel() else [0] * num_graphs
        return list(zip([0] + ends[:-1], ends))

    def _call_key(self) -> int:
        self.calls += 1
        return int(hash32(0x5EED0000 + self.calls))

    def keep_mask(self, shape: torch.Size, view: str, p: float) -> Tensor:
        """bool mask of ``shape`` ``[..., n, C]`` (``n`` tokens of ``view``; leading dims are streams)."""
        rows = self.rows[view]
        n, c = shape[-2], shape[-1]
        tokens = rows[-1][1] if rows else 0
        if tokens != n:
            raise ValueError(f"dropout: {n} rows for {tokens} {view} tokens")
        lead = int(torch.Size(shape[:-2]).numel())
        seeds = hash32(self.mol ^ hash32(self._call_key() ^ self.salts[view])).tolist()
        keep = torch.empty((lead, n, c), dtype=torch.bool, device=self.mol.device)
        for (lo, hi), seed in zip(rows, seeds):
            if hi > lo:
                gen = torch.Generator(device=self.mol.device).manual_seed(int(seed))
                torch.ge(torch.rand((lead, hi - lo, c), generator=gen, device=self.mol.device), p, out=keep[:, lo:hi])
        return keep.view(shape)

    def dropout(self, x: Tensor, view: str, p: float) -> Tensor:
        if p <= 0:
            return x
        keep = self.keep_mask(x.shape, view, p)
        return x * keep.to(x.dtype) / (1.0 - p)

    def attention_keep(self, heads: int, length: int, p: float) -> Tensor:
        """bool[G, H, L, L] keep mask of attention weights (query and key positions within the molecule)."""
        dev = self.mol.device
        h = torch.arange(heads, device=dev).view(heads, 1, 1)
        i = torch.arange(length, device=dev).view(1, length, 1)
        j = torch.arange(length, device=dev).view(1, 1, length)
        pos = hash32(hash32(hash32(h + 0x68656164) ^ i) ^ j)  # [H, L, L], independent of the padded length
        key = hash32(self.mol ^ self._call_key()).view(-1, 1, 1, 1)
        return hash32(key ^ pos) >= int(p * 2**32)


def noisy_dropout(module: nn.Dropout, x: Tensor, noise: SampleNoise | None, view: str) -> Tensor:
    """``module(x)``, or the molecules' own dropout mask when ``noise`` is given (training only)."""
    if noise is None or not module.training or module.p <= 0:
        return module(x)
    return noise.dropout(x, view, module.p)
