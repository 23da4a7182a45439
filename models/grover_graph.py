"""The index tensors of a batch of molecules for :class:`models.grover.GTransEncoder`, and the per-molecule sums
over them.

A batch holds ``N`` atoms and ``E = 2B`` directed bonds (bond ``b`` at columns ``2b`` and ``2b + 1`` of
``edge_index``), sorted by molecule. With ``padding_row`` the encoder reproduces the reference's zero-padded neighbour
tables: :func:`with_padding` adds the padding token's share to every per-atom sum.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["MoleculeGraph", "segment_mean", "segment_sum", "with_padding"]


def segment_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    """``out[j] = sum_{i: index[i] = j} src[i]`` along dim 0 (``index_add_``: no racing scatter on CPU)."""
    return src.new_zeros((size, *src.shape[1:])).index_add_(0, index, src)


def segment_mean(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of ``src`` rows per segment; an empty segment reads out as zeros (the reference's zero vector)."""
    count = torch.bincount(index, minlength=size).clamp_min(1).to(src.dtype)
    return segment_sum(src, index, size) / count.view(-1, *([1] * (src.dim() - 1)))


class MoleculeGraph(NamedTuple):
    """Index tensors of a batch of molecules, computed once per forward pass."""

    src: Tensor  # int64[E] source atom of each directed bond
    dst: Tensor  # int64[E] target atom
    rev: Tensor  # int64[E] the reverse direction of each bond (2b <-> 2b + 1)
    atom_batch: Tensor  # int64[N] molecule of each atom, sorted
    bond_batch: Tensor  # int64[E] molecule of each directed bond, sorted
    num_atoms: int
    num_graphs: int
    fill: Tensor | None = None  # float[N] padding slots per atom (``padding_row`` only): width - in-degree
    width: int = 0  # the batch's largest in-degree (at least 1): the reference's ``max_num_bonds``


def with_padding(agg_atoms: Tensor, pad: Tensor, graph: MoleculeGraph) -> Tensor:
    """Per-atom sums ``[..., N, h]`` plus the reference's padding slots: ``fill_a`` copies of the padding token's
    message ``pad`` ``[..., 1, h]`` for atom ``a``, and ``width`` copies for the padding atom (appended last)."""
    fill = graph.fill.to(agg_atoms.dtype).view(-1, 1)
    return torch.cat([agg_atoms + fill * pad, graph.width * pad], dim=-2)
