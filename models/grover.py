"""GROVER's GTransEncoder for molecular graphs (Rong et al., "Self-Supervised Graph Transformer on Large-Scale
Molecular Data", NeurIPS 2020), with attention over the atoms (bonds) of each molecule.

The encoder has two views of a molecule. The **node view** works on atoms, the **edge view** on directed bonds,
whose input is ``[x_source_atom, edge_attr]`` (atom_dim + bond_dim columns, as in the reference). Each view runs
``blocks`` multi-head blocks; in a block, every attention head ``i`` takes its query, key and value from its own
message-passing network (dyMPN) over the view's tokens ``h``::

    node view:  m_a <- act(h_a + W_i^T sum_{w in N(a)} m_w)                         (atoms)
    edge view:  m_uv <- act(h_uv + W_i^T (sum_{w in N(u)} m_wu - m_vu))              (directed bonds u->v)

repeated ``K`` times, where during training ``K`` is drawn at every forward pass from a normal distribution around
``depth`` with standard deviation ``depth_sigma`` truncated at three deviations (the reference's "truncnorm"
dynamic depth), and ``K = depth`` in eval mode. One ``K`` is drawn per view and pass and shared by the view's
``3 x heads`` networks, so they run as one batched matmul (the reference draws one per network). The reference
also truncates its draw with ``int()``: it runs ``floor(depth_ref + z) - 1`` hops (``depth_ref = depth + 1``), on
average half a hop fewer than ``round(depth + z)`` here; eval mode (and so the parity of converted checkpoints) is
unaffected.

Attention then mixes the tokens of the same molecule::

    o_i = softmax(Q_i K_i^T / sqrt(hidden) + M) V_i,   M[s, t] = 0 if s, t in the same molecule else -inf

with ``Q_i = W_q q_i``, ``K_i = W_k k_i``, ``V_i = W_v v_i`` (projections shared by the heads, as in the reference).
This fixes the reference's defect: its attention runs over the ``heads`` vectors of a *single* atom (sequence
length = number of heads), so atoms never attend to each other. Here the molecules of a batch are padded with
:func:`torch_geometric.utils.to_dense_batch` and attend under a key-padding mask, never across molecules. The
block output is ``LayerNorm(W_o [W_out o_1, ..., W_out o_heads])``.

Four output branches combine the two views, each ``LayerNorm(FFN([raw features, aggregated view output]))`` with
``FFN = Linear(4 hidden) -> PReLU -> Linear(hidden)``:

- ``atom_from_atom``: sum of node-view outputs over the atom's neighbours, with the atom's raw features;
- ``atom_from_bond``: sum of edge-view outputs over the bonds into the atom;
- ``bond_from_atom``: node-view outputs of ``u`` and its neighbours except ``v``, for bond ``u->v``;
- ``bond_from_bond``: edge-view outputs of the bonds into ``u`` except ``v->u``.

:meth:`GTransEncoder.embed` reads out a molecule as the **concatenation** of the per-molecule means of the two atom
branches, ``[mean_a atom_from_atom, mean_a atom_from_bond]`` (``embed_dim = 2 hidden``), the reference's
fingerprint with ``fingerprint_source = "atom"``.

**Reference behaviour, for its checkpoints.** ``attention="reference"`` (:func:`token_head_attention`) and
``padding_row=True`` compute exactly what tencent-ailab/grover's ``GTransEncoder`` does; the converter of their
checkpoints (``models/converters/grover.py``) sets both, the defaults are the corrected encoder. Measured on the
golden batch of tests/models/test_convert_grover.py (their code, hidden 12, 3 heads, LayerNorm biases ~N(0, 0.3)):
converted, the four branches equal theirs to 8e-7 (max abs); dropping the padding row changes them by 0.24-0.43
mean abs (|features| ~0.6-1.0), and a molecule's features then no longer depend on its batch-mates (theirs move by
up to 1.04 when a degree-4 molecule joins the batch; ours by 3e-7); attending over atoms instead of a token's
own heads changes them by a further 0.10-0.42 mean abs.

Sizes: ``grover_base`` (hidden 800, 4 heads) has 48M parameters and ``grover_large`` (hidden 1200) 107M, as in the
paper (48M / 100M); ``depth = 4`` hops is the reference pretraining command's ``--depth 5`` (it runs depth - 1 hops).

**Per-molecule randomness.** Given ``seeds`` (one int per molecule) :meth:`GTransEncoder.encode` draws every
dropout mask from a counter-based hash of (molecule seed, token index within the molecule, column, call), and the
hop counts from a generator seeded with ``depth_seed`` (:class:`SampleNoise`). A molecule's noise then does not
depend on which other molecules share its batch, so a batch split over W processes trains exactly like the whole
batch in one process. Without seeds, ``nn.Dropout`` and torch's generator are used as before.

The pieces live in their own modules: the batch's index tensors and per-molecule sums in :mod:`models.grover_graph`,
per-molecule randomness in :mod:`models.grover_noise`, the dyMPNs in :mod:`models.grover_mpn` and both attentions in
:mod:`models.grover_attention`; this module assembles them into the blocks and the encoder.

Inputs: a torch_geometric ``Batch`` (or ``Data``) with ``x`` float[N, atom_dim], ``edge_index`` int64[2, 2B] holding
the two directions of bond ``b`` at columns ``2b`` and ``2b + 1``, ``edge_attr`` float[2B, bond_dim] and ``batch``
int64[N] sorted by molecule (as torch_geometric batches are).

>>> enc = GTransEncoder(hidden=16, heads=2, depth=2)
>>> x, ei, ea = torch.randn(3, 151), torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), torch.randn(4, 14)
>>> out = enc.encode(x, ei, ea, torch.zeros(3, dtype=torch.long), 1)
>>> out["atom_from_atom"].shape, out["bond_from_bond"].shape
(torch.Size([3, 16]), torch.Size([4, 16]))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.grover_attention import molecule_attention, token_head_attention
from models.grover_graph import MoleculeGraph, segment_mean, segment_sum, with_padding
from models.grover_mpn import DyMPN, truncated_normal_depth
from models.grover_noise import SampleNoise, hash32, noisy_dropout

__all__ = ["BRANCHES", "DyMPN", "GTransEncoder", "MoleculeGraph", "SampleNoise", "hash32", "molecule_attention",
           "segment_mean", "segment_sum", "token_head_attention", "truncated_normal_depth"]

ATOM_DIM = 151
BOND_DIM = 14
BRANCHES = ("atom_from_atom", "atom_from_bond", "bond_from_atom", "bond_from_bond")


class MTBlock(nn.Module):
    """One multi-head block of a view: input projection (first block only), dyMPN queries / keys / values per head,
    attention within each molecule, output projection and LayerNorm (no residual, as in the reference).

    Shapes: float[n, in_dim] -> float[n, hidden].
    """

    def __init__(self, in_dim: int, hidden: int, heads: int, depth: int, depth_sigma: float, view: str,
                 dropout: float, attention: str = "molecule") -> None:
        super().__init__()
        self.heads, self.view, self.attn_dropout, self.attention = heads, view, dropout, attention
        self.proj: nn.Module | None = None
        if in_dim != hidden:
            self.proj = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.PReLU(), nn.LayerNorm(hidden),
                                      nn.Dropout(dropout))
        self.mpn = DyMPN(hidden, 3 * heads, depth, depth_sigma, view, dropout)
        self.w_q = nn.Linear(hidden, hidden)
        self.w_k = nn.Linear(hidden, hidden)
        self.w_v = nn.Linear(hidden, hidden)
        self.w_out = nn.Linear(hidden, hidden, bias=False)
        self.w_o = nn.Linear(heads * hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, graph: MoleculeGraph, noise: SampleNoise | None = None) -> Tensor:
        if self.proj is not None:
            linear, act, norm, drop = self.proj
            h = noisy_dropout(drop, norm(act(linear(h))), noise, self.view)
        m = self.mpn(h, graph, noise)
        H = self.heads
        q, k, v = self.w_q(m[:H]), self.w_k(m[H:2 * H]), self.w_v(m[2 * H:])
        if self.attention == "reference":
            o = token_head_attention(q, k, v, self.attn_dropout if self.training else 0.0)
        else:
            index = graph.atom_batch if self.view == "atom" else graph.bond_batch
            o = molecule_attention(q, k, v, index, graph.num_graphs, self.attn_dropout if self.training else 0.0,
                                   noise)
        o = self.w_out(o)  # [H, n, hidden]
        o = o.permute(1, 0, 2).reshape(o.shape[1], H * o.shape[2])
        return noisy_dropout(self.dropout, self.norm(self.w_o(o)), noise, self.view)


class FeedForward(nn.Module):
    """``Linear(in, inner) -> PReLU -> dropout -> Linear(inner, out)``, the reference's position-wise FFN."""

    def __init__(self, in_dim: int, inner: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, inner), nn.PReLU(), nn.Dropout(dropout), nn.Linear(inner, out_dim))

    def forward(self, x: Tensor, noise: SampleNoise | None = None, view: str = "atom") -> Tensor:
        if noise is None:
            return self.net(x)
        first, act, drop, last = self.net
        return last(noisy_dropout(drop, act(first(x)), noise, view))


def _check(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"model.{name}: must be an integer >= {low}, got {value!r}")


class GTransEncoder(nn.Module):
    """GROVER's dual-view graph transformer encoder (see the module docstring for the maths).

    Args:
        hidden: width of both views and of the four branches (tiny 100, base 800, large 1200).
        heads: attention heads per block; each has its own dyMPN for Q, K and V (reference pretraining: 4).
        depth: mean number of message-passing hops of the dyMPNs (fixed in eval mode).
        depth_sigma: standard deviation of the hop count during training (0 disables dynamic depth).
        blocks: multi-head blocks per view (reference: 1).
        atom_dim: atom feature width (151).
        bond_dim: bond feature width (14); the edge view's input is ``atom_dim + bond_dim``.
        dropout: dropout in the dyMPNs, attention, blocks and feed-forward networks.
        attention: ``"molecule"`` (default): tokens attend over the tokens of their molecule; ``"reference"``: the
            reference's attention over a token's own heads (:func:`token_head_attention`), set by the converter of
            the reference's checkpoints (``models/converters/grover.py``) so that they give their features.
            Requires ``hidden`` divisible by ``heads``.
        padding_row: reproduce the reference's zero-padding (``"reference"`` attention only): its batch holds a
            padding atom and a padding bond (index 0) whose states run through every layer, and its neighbour
            tables are padded to the batch's largest in-degree ``w`` with them, so every sum over an atom's
            neighbours or incoming bonds also adds ``w - degree`` copies of the padding token (the padding atom
            itself sums ``w`` copies). A molecule's features then depend on the other molecules of its batch (through
            ``w``) whenever the padding state is non-zero, i.e. whenever a LayerNorm bias is. Dropout masks then
            come from ``nn.Dropout`` (``seeds`` are ignored).

    Shapes: :meth:`forward` returns the four branches, atoms float[N, hidden] and directed bonds float[2B, hidden];
    :meth:`embed` returns float[G, 2 hidden].
    """

    def __init__(self, hidden: int = 100, heads: int = 1, depth: int = 4, depth_sigma: float = 1.0, blocks: int = 1,
                 atom_dim: int = ATOM_DIM, bond_dim: int = BOND_DIM, dropout: float = 0.0,
                 attention: str = "molecule", padding_row: bool = False) -> None:
        super().__init__()
        for name, value, low in (("hidden", hidden, 1), ("heads", heads, 1), ("depth", depth, 0),
                                 ("blocks", blocks, 1), ("atom_dim", atom_dim, 1), ("bond_dim", bond_dim, 1)):
            _check(name, value, low)
        if not isinstance(depth_sigma, (int, float)) or depth_sigma < 0:
            raise ValueError(f"model.depth_sigma: must be a number >= 0, got {depth_sigma!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout: must be in [0, 1), got {dropout!r}")
        if attention not in ("molecule", "reference"):
            raise ValueError(f"model.attention: 'molecule' or 'reference', got {attention!r}")
        if attention == "reference" and hidden % heads:
            raise ValueError(f"model.attention: 'reference' splits hidden ({hidden}) into heads ({heads}) equal "
                             f"parts; hidden must be divisible by heads")
        if not isinstance(padding_row, bool) or (padding_row and attention != "reference"):
            raise ValueError(f"model.padding_row: a bool, true only with attention 'reference', got {padding_row!r}")
        self.attention, self.padding_row = attention, padding_row
        self.hidden, self.atom_dim, self.bond_dim = hidden, atom_dim, bond_dim
        self.embed_dim = 2 * hidden
        edge_dim = atom_dim + bond_dim
        self.node_blocks = nn.ModuleList(
            MTBlock(atom_dim if i == 0 else hidden, hidden, heads, depth, depth_sigma, "atom", dropout, attention)
            for i in range(blocks))
        self.edge_blocks = nn.ModuleList(
            MTBlock(edge_dim if i == 0 else hidden, hidden, heads, depth, depth_sigma, "bond", dropout, attention)
            for i in range(blocks))
        self.ffn = nn.ModuleDict({
            "atom_from_atom": FeedForward(hidden + atom_dim, 4 * hidden, hidden, dropout),
            "atom_from_bond": FeedForward(hidden + atom_dim, 4 * hidden, hidden, dropout),
            "bond_from_atom": FeedForward(hidden + edge_dim, 4 * hidden, hidden, dropout),
            "bond_from_bond": FeedForward(hidden + edge_dim, 4 * hidden, hidden, dropout),
        })
        self.branch_norm = nn.ModuleDict({b: nn.LayerNorm(hidden) for b in BRANCHES})
        self.dropout = nn.Dropout(dropout)

    @property
    def last_depths(self) -> list[int]:
        """The hop counts of the last forward pass, one per block (node view, then edge view)."""
        return [b.mpn.last_depth for b in (*self.node_blocks, *self.edge_blocks)]

    def graph(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor | None,
              num_graphs: int) -> MoleculeGraph:
        """Check the inputs and build the index tensors (one line per mistake, naming the field)."""
        if x.dim() != 2 or x.shape[1] != self.atom_dim:
            raise ValueError(f"x: expected float[n_atoms, {self.atom_dim}] atom features, got {tuple(x.shape)}")
        if edge_attr.dim() != 2 or edge_attr.shape[1] != self.bond_dim:
            raise ValueError(f"edge_attr: expected float[2 n_bonds, {self.bond_dim}], got {tuple(edge_attr.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.shape[1] % 2:
            raise ValueError(f"edge_index: expected int64[2, 2 n_bonds] (both directions of each bond), "
                             f"got {tuple(edge_index.shape)}")
        if edge_index.shape[1] != edge_attr.shape[0]:
            raise ValueError(f"edge_attr: {edge_attr.shape[0]} rows for {edge_index.shape[1]} directed bonds")
        src, dst = edge_index[0], edge_index[1]
        if not (torch.equal(src[0::2], dst[1::2]) and torch.equal(dst[0::2], src[1::2])):
            raise ValueError("edge_index: columns 2b and 2b+1 must be the two directions of bond b")
        n = x.shape[0]
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=x.device)
        if n > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("batch: atoms must be sorted by molecule, as torch_geometric batches are")
        rev = torch.arange(src.shape[0], device=src.device) ^ 1
        fill, width = None, 0
        if self.padding_row:
            degree = torch.bincount(dst, minlength=n)
            width = max(1, int(degree.max())) if n else 1
            fill = (width - degree).to(x.dtype)
        return MoleculeGraph(src, dst, rev, batch, batch[src], n, int(num_graphs), fill, width)

    def encode(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor | None = None,
               num_graphs: int = 1, seeds: Tensor | None = None, depth_seed: int | None = None) -> dict[str, Tensor]:
        """The four branch embeddings of a batch given as tensors (see the class Shapes).

        ``seeds`` (int64[G], one per molecule) makes every dropout mask a function of the molecule alone and
        ``depth_seed`` draws the hop counts from its own generator (:class:`SampleNoise`); both are used in training
        mode only.
        """
        g = self.graph(x, edge_index, edge_attr, batch, num_graphs)
        padded = g.fill is not None
        noise = SampleNoise(seeds, g, depth_seed) if seeds is not None and self.training and not padded else None
        f_bond = torch.cat([x[g.src], edge_attr], dim=1)
        atoms, bonds = x, f_bond
        if padded:  # the reference's all-zero padding atom and bond, appended last
            atoms, bonds = F.pad(atoms, (0, 0, 0, 1)), F.pad(bonds, (0, 0, 0, 1))
        for block in self.node_blocks:
            atoms = block(atoms, g, noise)
        for block in self.edge_blocks:
            bonds = block(bonds, g, noise)
        n = g.num_atoms
        around_u = segment_sum(atoms[g.src], g.dst, n)  # sum of neighbours' node-view outputs, per atom
        into_u = segment_sum(bonds[:g.src.shape[0]], g.dst, n)  # edge-view outputs of the bonds into each atom
        if padded:
            around_u = with_padding(around_u, atoms[-1:], g)[:n]
            into_u = with_padding(into_u, bonds[-1:], g)[:n]
        aggregated = {
            "atom_from_atom": (x, around_u),
            "atom_from_bond": (x, into_u),
            "bond_from_atom": (f_bond, atoms[g.src] + around_u[g.src] - atoms[g.dst]),
            "bond_from_bond": (f_bond, into_u[g.src] - bonds[g.rev]),
        }
        return {b: noisy_dropout(self.dropout, self.branch_norm[b](self.ffn[b](torch.cat(aggregated[b], dim=1), noise,
                                                                       b[:4])), noise, b[:4])
                for b in BRANCHES}

    def forward(self, data: Any) -> dict[str, Tensor]:
        """The four branches of a torch_geometric ``Batch``/``Data`` (``x``, ``edge_index``, ``edge_attr``, ``batch``)."""
        return self.encode(data.x, data.edge_index, data.edge_attr, getattr(data, "batch", None), _num_graphs(data))

    def readout(self, branches: dict[str, Tensor], data: Any) -> Tensor:
        """float[G, 2 hidden]: per-molecule means of ``atom_from_atom`` and ``atom_from_bond``, concatenated."""
        batch, g = getattr(data, "batch", None), _num_graphs(data)
        if batch is None:
            batch = torch.zeros(data.x.shape[0], dtype=torch.long, device=data.x.device)
        return torch.cat([segment_mean(branches["atom_from_atom"], batch, g),
                          segment_mean(branches["atom_from_bond"], batch, g)], dim=1)

    def embed(self, data: Any) -> Tensor:
        """Molecule embeddings float[G, embed_dim] (see :meth:`readout`)."""
        return self.readout(self(data), data)

    @property
    def view_dims(self) -> tuple[int, int]:
        """Widths of the two :meth:`embed_views` readouts."""
        return (self.hidden, self.hidden)

    def embed_views(self, data: Any) -> list[Tensor]:
        """GROVER's two fine-tuning readouts, float[G, hidden] each: the per-molecule means of the atom embeddings
        from the node view (``atom_from_atom``) and from the edge view (``atom_from_bond``); each gets its own
        prediction head and the two predictions are averaged (the reference's two-branch fine-tuning)."""
        z = self.embed(data)
        return [z[:, :self.hidden], z[:, self.hidden:]]


def _num_graphs(data: Any) -> int:
    n = getattr(data, "num_graphs", None)
    return int(n) if n is not None else 1
