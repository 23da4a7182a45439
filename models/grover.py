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

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BRANCHES", "DyMPN", "GTransEncoder", "MoleculeGraph", "SampleNoise", "hash32", "molecule_attention",
           "segment_mean", "segment_sum", "token_head_attention", "truncated_normal_depth"]

ATOM_DIM = 151
BOND_DIM = 14
BRANCHES = ("atom_from_atom", "atom_from_bond", "bond_from_atom", "bond_from_bond")


def segment_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    """``out[j] = sum_{i: index[i] = j} src[i]`` along dim 0 (``index_add_``: no racing scatter on CPU)."""
    return src.new_zeros((size, *src.shape[1:])).index_add_(0, index, src)


def segment_mean(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of ``src`` rows per segment; an empty segment reads out as zeros (the reference's zero vector)."""
    count = torch.bincount(index, minlength=size).clamp_min(1).to(src.dtype)
    return segment_sum(src, index, size) / count.view(-1, *([1] * (src.dim() - 1)))


def truncated_normal_depth(mean: int, sigma: float, generator: torch.Generator | None = None) -> int:
    """A hop count ``round(mean + sigma z)``, ``z ~ N(0, 1)`` truncated to ``|z| <= 3``, at least 1.

    Drawn from ``generator`` (default: torch's global generator, which the training loop reseeds every step).
    """
    if sigma <= 0:
        return mean
    while True:
        z = float(torch.randn((), generator=generator))
        if abs(z) <= 3.0:
            return max(1, round(mean + sigma * z))


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

    The keep/drop decision of element ``[.., t, c]`` of a token tensor is ``hash(key_t, call, stream, c) >= p 2^32``,
    with ``key_t`` a hash of the molecule's seed and the token's index inside its molecule (atoms; directed bonds),
    ``call`` the number of dropout calls made so far in this forward pass. Attention weights use (molecule seed,
    call, head, query position, key position). Kept elements are scaled by ``1 / (1 - p)`` as ``nn.Dropout`` does.

    Args:
        seeds: int64[G], one seed per molecule (the training loop's per-sample seeds).
        graph: the batch's :class:`MoleculeGraph`.
        depth_seed: seed of the hop-count generator (shared by every process: the loop's ``step_seed``); ``None``
            draws hop counts from torch's global generator.
    """

    def __init__(self, seeds: Tensor, graph: "MoleculeGraph", depth_seed: int | None = None) -> None:
        seeds = torch.as_tensor(seeds, device=graph.atom_batch.device).long().reshape(-1)
        if seeds.numel() != graph.num_graphs:
            raise ValueError(f"seeds: {seeds.numel()} seeds for {graph.num_graphs} molecules")
        self.mol = _seed_key(seeds)
        self.tokens = {"atom": self._token_keys(graph.atom_batch, graph.num_graphs, 0x61746F6D),
                       "bond": self._token_keys(graph.bond_batch, graph.num_graphs, 0x626F6E64)}
        self.calls = 0
        self.generator: torch.Generator | None = None
        if depth_seed is not None:
            self.generator = torch.Generator().manual_seed(int(depth_seed) & 0x7FFF_FFFF_FFFF_FFFF)

    def _token_keys(self, index: Tensor, num_graphs: int, salt: int) -> Tensor:
        n = index.numel()
        first = torch.searchsorted(index, torch.arange(num_graphs, device=index.device))
        local = torch.arange(n, device=index.device) - first[index] if n else index.new_zeros(0)
        return hash32(self.mol[index] ^ hash32(local + salt)) if n else index.new_zeros(0)

    def _call_key(self) -> int:
        self.calls += 1
        return int(hash32(0x5EED0000 + self.calls))

    def keep_mask(self, shape: torch.Size, view: str, p: float) -> Tensor:
        """bool mask of ``shape`` ``[..., n, C]`` (``n`` tokens of ``view``; leading dims are streams)."""
        tok = self.tokens[view]
        n, c = shape[-2], shape[-1]
        if tok.numel() != n:
            raise ValueError(f"dropout: {n} rows for {tok.numel()} {view} tokens")
        lead = int(torch.Size(shape[:-2]).numel())
        col = torch.arange(lead * c, device=tok.device).view(lead, 1, c)
        key = hash32(tok ^ self._call_key()).view(1, n, 1)
        u = hash32(key ^ hash32(col + 0x636F6C00))
        return (u >= int(p * 2**32)).view(shape)

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


def _drop(module: nn.Dropout, x: Tensor, noise: SampleNoise | None, view: str) -> Tensor:
    """``module(x)``, or the molecules' own dropout mask when ``noise`` is given (training only)."""
    if noise is None or not module.training or module.p <= 0:
        return module(x)
    return noise.dropout(x, view, module.p)


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


def _with_padding(agg_atoms: Tensor, pad: Tensor, graph: MoleculeGraph) -> Tensor:
    """Per-atom sums ``[..., N, h]`` plus the reference's padding slots: ``fill_a`` copies of the padding token's
    message ``pad`` ``[..., 1, h]`` for atom ``a``, and ``width`` copies for the padding atom (appended last)."""
    fill = graph.fill.to(agg_atoms.dtype).view(-1, 1)
    return torch.cat([agg_atoms + fill * pad, graph.width * pad], dim=-2)


def molecule_attention(q: Tensor, k: Tensor, v: Tensor, index: Tensor, num_graphs: int,
                       dropout: float = 0.0, noise: SampleNoise | None = None) -> Tensor:
    """Scaled dot-product attention among tokens of the same molecule.

    Args:
        q, k, v: float[H, n, d], one row per head and token.
        index: int64[n] molecule of each token, sorted.
        num_graphs: number of molecules ``G`` (molecules without tokens are allowed).
        dropout: attention dropout probability.
        noise: with dropout, draw the attention-weight masks per molecule (:class:`SampleNoise`).

    Returns:
        float[H, n, d]: ``softmax(q_s k_t / sqrt(d))``-weighted sums of ``v_t`` over tokens ``t`` of the molecule
        of ``s``.
    """
    from torch_geometric.utils import to_dense_batch

    h, n, d = q.shape
    if n == 0:
        return q.new_zeros(q.shape)

    def dense(t: Tensor) -> tuple[Tensor, Tensor]:
        t, mask = to_dense_batch(t.permute(1, 0, 2).reshape(n, h * d), index, batch_size=num_graphs)
        return t.view(num_graphs, -1, h, d).transpose(1, 2), mask  # [G, H, L, d]

    qd, mask = dense(q)
    kd, _ = dense(k)
    vd, _ = dense(v)
    keys = mask.clone()
    keys[~mask.any(dim=1), 0] = True  # a molecule without tokens: its padded rows are discarded, keep them finite
    if noise is not None and dropout > 0:
        scores = torch.matmul(qd, kd.transpose(-1, -2)) / math.sqrt(d)
        weights = torch.softmax(scores.masked_fill(~keys[:, None, None, :], float("-inf")), dim=-1)
        keep = noise.attention_keep(h, weights.shape[-1], dropout)
        out = torch.matmul(weights * keep.to(weights.dtype) / (1.0 - dropout), vd)
    else:
        out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=keys[:, None, None, :], dropout_p=dropout)
    return out.transpose(1, 2)[mask].view(n, h, d).permute(1, 0, 2)


def token_head_attention(q: Tensor, k: Tensor, v: Tensor, dropout: float = 0.0) -> Tensor:
    """The reference's attention (``MultiHeadedAttention`` of tencent-ailab/grover), kept to reproduce its
    checkpoints: each token attends over its *own* ``H`` head vectors, never over other tokens.

    With ``H`` heads, every vector is split into ``H`` sub-heads of width ``d = hidden / H``; for token ``t`` and
    sub-head ``j``, ``o_{i,t,j} = sum_l softmax_l(q_{i,t,j} . k_{l,t,j} / sqrt(d)) v_{l,t,j}`` over the heads
    ``l``. With one head the output is ``v`` (a softmax over one element).

    Shapes: q, k, v float[H, n, hidden] -> float[H, n, hidden].
    """
    h, n, hidden = q.shape
    d = hidden // h

    def split(t: Tensor) -> Tensor:  # [H, n, hidden] -> [n, sub-head, H, d]
        return t.permute(1, 0, 2).reshape(n, h, h, d).transpose(1, 2)

    scores = torch.matmul(split(q), split(k).transpose(-1, -2)) / math.sqrt(d)
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout, training=dropout > 0)
    out = torch.matmul(weights, split(v))  # [n, sub-head, H, d]
    return out.transpose(1, 2).reshape(n, h, hidden).permute(1, 0, 2)


class DyMPN(nn.Module):
    """``streams`` message-passing networks with their own weights over atoms (``view="atom"``) or directed bonds
    (``view="bond"``), run as one batched matmul, with dynamic depth.

    ``m^0 = h``; ``m^{t+1}_s = dropout(PReLU_s(h + A(m^t_s) W_s))`` for ``t < K``, where ``A`` sums the neighbouring
    atoms' messages (atom view) or the messages into the bond's source atom minus the reverse bond's (bond view).
    ``K`` is drawn by :func:`truncated_normal_depth` in training and equals ``depth`` in eval mode; the last ``K``
    is kept in :attr:`last_depth`.

    Shapes: ``h`` float[n, hidden] -> float[streams, n, hidden].
    """

    def __init__(self, hidden: int, streams: int, depth: int, depth_sigma: float = 1.0, view: str = "atom",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if view not in ("atom", "bond"):
            raise ValueError(f"view: 'atom' or 'bond', got {view!r}")
        self.view, self.depth, self.depth_sigma = view, depth, depth_sigma
        bound = 1.0 / math.sqrt(hidden)  # nn.Linear's default initialisation, per network
        self.weight = nn.Parameter(torch.empty(streams, hidden, hidden).uniform_(-bound, bound))
        self.slope = nn.Parameter(torch.full((streams,), 0.25))  # PReLU slope per network
        self.dropout = nn.Dropout(dropout)
        self.last_depth = depth

    def forward(self, h: Tensor, graph: MoleculeGraph, noise: SampleNoise | None = None) -> Tensor:
        gen = noise.generator if noise is not None else None
        k = truncated_normal_depth(self.depth, self.depth_sigma, gen) if self.training else self.depth
        self.last_depth = k
        streams = self.weight.shape[0]
        m = h  # float[n, hidden] until the first hop: every network starts from the same messages
        padded = graph.fill is not None  # the last token is the reference's padding atom / bond
        for _ in range(k):
            d = m.dim() - 2  # the token dimension: 0 before the first hop, then 1
            if self.view == "atom":
                agg = m.new_zeros(m.shape).index_add_(d, graph.dst, m[..., graph.src, :])
                if padded:
                    agg = _with_padding(agg[..., :-1, :], m[..., -1:, :], graph)
            else:
                real = m[..., :-1, :] if padded else m
                shape = (*m.shape[:d], graph.num_atoms, m.shape[-1])
                into = m.new_zeros(shape).index_add_(d, graph.dst, real)
                if padded:
                    into = _with_padding(into, m[..., -1:, :], graph)
                agg = into[..., graph.src, :] - real[..., graph.rev, :]
                if padded:  # the padding bond runs from the padding atom and is its own reverse
                    agg = torch.cat([agg, into[..., -1:, :] - m[..., -1:, :]], dim=-2)
            z = h + torch.matmul(agg, self.weight.to(agg.dtype))  # [n, h] or [S, n, h] @ [S, h, h] -> [S, n, h]
            # networks as PReLU channels: one fused kernel instead of where() + mul
            m = _drop(self.dropout, F.prelu(z.reshape(1, streams, -1), self.slope.to(z.dtype)).view_as(z), noise,
                      self.view)
        return m if m.dim() == 3 else m.unsqueeze(0).expand(streams, -1, -1)


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
            h = _drop(drop, norm(act(linear(h))), noise, self.view)
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
        return _drop(self.dropout, self.norm(self.w_o(o)), noise, self.view)


class FeedForward(nn.Module):
    """``Linear(in, inner) -> PReLU -> dropout -> Linear(inner, out)``, the reference's position-wise FFN."""

    def __init__(self, in_dim: int, inner: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, inner), nn.PReLU(), nn.Dropout(dropout), nn.Linear(inner, out_dim))

    def forward(self, x: Tensor, noise: SampleNoise | None = None, view: str = "atom") -> Tensor:
        if noise is None:
            return self.net(x)
        first, act, drop, last = self.net
        return last(_drop(drop, act(first(x)), noise, view))


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
            around_u = _with_padding(around_u, atoms[-1:], g)[:n]
            into_u = _with_padding(into_u, bonds[-1:], g)[:n]
        aggregated = {
            "atom_from_atom": (x, around_u),
            "atom_from_bond": (x, into_u),
            "bond_from_atom": (f_bond, atoms[g.src] + around_u[g.src] - atoms[g.dst]),
            "bond_from_bond": (f_bond, into_u[g.src] - bonds[g.rev]),
        }
        return {b: _drop(self.dropout, self.branch_norm[b](self.ffn[b](torch.cat(aggregated[b], dim=1), noise,
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
