"""GTransEncoder: branch shapes, attention within (never across) molecules, dynamic depth, save/load, sizes."""

from __future__ import annotations


import pytest
import torch

import models
from models.grover import BRANCHES, GTransEncoder, molecule_attention

torch_geometric = pytest.importorskip("torch_geometric")
from torch_geometric.data import Batch, Data  # noqa: E402

ATOM_DIM, BOND_DIM, MOTIFS = 151, 14, 85


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_molecule(n_atoms: int, seed: int, rings: int = 1, chain: bool = False, atom_vocab: int = 12,
                       bond_vocab: int = 7) -> Data:
    """A molecule-shaped graph with the data side's layout: a random tree (or a chain) plus ``rings`` ring
    closures; bond ``b``'s two directions at columns ``2b`` and ``2b + 1``; vocabulary keys; motif labels."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for a in range(1, n_atoms):
        parent = a - 1 if chain else int(torch.randint(0, a, (1,), generator=g))
        pairs.append((parent, a))
    have = set(pairs)
    for _ in range(0 if chain else rings):
        if n_atoms < 4:
            break
        u, v = sorted(torch.randperm(n_atoms, generator=g)[:2].tolist())
        if (u, v) not in have:
            pairs.append((u, v))
            have.add((u, v))
    cols = [c for u, v in pairs for c in ((u, v), (v, u))]
    edge_index = torch.tensor(cols, dtype=torch.long).t().reshape(2, -1)
    x = (torch.rand(n_atoms, ATOM_DIM, generator=g) < 0.08).float()
    edge_attr = (torch.rand(len(pairs), BOND_DIM, generator=g) < 0.3).float().repeat_interleave(2, dim=0)
    bond_key = torch.randint(0, bond_vocab, (len(pairs),), generator=g).repeat_interleave(2)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr,
                atom_key=torch.randint(0, atom_vocab, (n_atoms,), generator=g), bond_key=bond_key,
                motif=(torch.rand(1, MOTIFS, generator=g) < 0.2).float())


def synthetic_batch(sizes=(9, 14, 1, 6), seed: int = 0, **kw) -> Batch:
    return Batch.from_data_list([synthetic_molecule(n, seed + i, **kw) for i, n in enumerate(sizes)])


def small(**kw) -> GTransEncoder:
    torch.manual_seed(0)
    return GTransEncoder(**{"hidden": 24, "heads": 2, "depth": 2, **kw})


def test_branch_shapes_embed_and_backward():
    batch = synthetic_batch()  # one molecule is a single atom without bonds
    enc = small(dropout=0.1).train()
    out = enc(batch)
    n, e = batch.x.shape[0], batch.edge_index.shape[1]
    assert set(out) == set(BRANCHES)
    for b in BRANCHES:
        rows = n if b.startswith("atom") else e
        assert out[b].shape == (rows, 24) and torch.isfinite(out[b]).all(), b
    sum(o.sum() for o in out.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    z = enc.eval().embed(batch)
    assert z.shape == (4, enc.embed_dim) == (4, 48)
    # the readout is the concatenated per-molecule mean of the two atom branches
    out = enc(batch)
    first = batch.batch == 0
    torch.testing.assert_close(z[0], torch.cat([out["atom_from_atom"][first].mean(0), out["atom_from_bond"][first].mean(0)]))


@pytest.mark.parametrize("perturbed", [0, 1])
def test_attention_mixes_atoms_within_a_molecule_never_across(perturbed):
    # chains of 14 atoms, one hop of message passing: only attention reaches atoms far from the perturbed one
    batch = Batch.from_data_list([synthetic_molecule(14, s, chain=True) for s in (1, 2, 3)])
    enc = small(depth=1, depth_sigma=0.0).eval()
    x2 = batch.x.clone()
    start = int(batch.ptr[perturbed])
    x2[start] = torch.rand(ATOM_DIM)  # the first atom of molecule `perturbed`
    a = enc.encode(batch.x, batch.edge_index, batch.edge_attr, batch.batch, 3)
    b = enc.encode(x2, batch.edge_index, batch.edge_attr, batch.batch, 3)
    atom_mol, bond_mol = batch.batch, batch.batch[batch.edge_index[0]]
    for name in BRANCHES:
        mol = atom_mol if name.startswith("atom") else bond_mol
        delta = (a[name] - b[name]).abs().amax(dim=1)
        assert delta[mol != perturbed].max() == 0.0, name  # other molecules: bit-identical
        if name.startswith("atom"):
            far = torch.arange(start + 8, start + 14)  # 8+ bonds away: beyond MPN (1 hop) + branch (1 hop)
            assert (delta[far] > 1e-6).all(), name


def test_molecule_attention_equals_block_diagonal_dense_attention():
    torch.manual_seed(0)
    index = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3])  # molecule 1 has no tokens
    q, k, v = (torch.randn(3, 9, 8) for _ in range(3))
    got = molecule_attention(q, k, v, index, num_graphs=4)
    same = index[:, None] == index[None, :]
    scores = (q @ k.transpose(1, 2)) / 8 ** 0.5
    want = torch.softmax(scores.masked_fill(~same, float("-inf")), dim=-1) @ v
    torch.testing.assert_close(got, want)


def test_dynamic_depth_varies_in_training_and_is_fixed_in_eval():
    batch = synthetic_batch()
    enc = small(depth=4, blocks=2)
    torch.manual_seed(1)
    seen = set()
    enc.train()
    for _ in range(25):
        enc(batch)
        seen.update(enc.last_depths)
    assert len(seen) >= 3 and min(seen) >= 1 and max(seen) <= 7
    enc.eval()
    for _ in range(5):
        enc(batch)
        assert enc.last_depths == [4, 4, 4, 4]
    torch.testing.assert_close(enc.embed(batch), enc.embed(batch))
    with torch.no_grad():
        enc.train()
        for blk in (*enc.node_blocks, *enc.edge_blocks):
            blk.mpn.depth_sigma = 0.0
        enc(batch)
        assert enc.last_depths == [4, 4, 4, 4]


@pytest.mark.parametrize("name,expected,tol", [("grover_base", 48e6, 0.02), ("grover_large", 100e6, 0.08)])
def test_paper_sizes(name, expected, tol):
    with torch.device("meta"):  # count only: no memory, no initialisation
        enc = models.create(name)
    n = sum(p.numel() for p in enc.parameters())
    assert abs(n - expected) / expected < tol, n


def test_bad_inputs_are_named():
    enc = small()
    batch = synthetic_batch()
    with pytest.raises(ValueError, match="x: expected float"):
        enc.encode(batch.x[:, :100], batch.edge_index, batch.edge_attr, batch.batch, 4)
    swapped = batch.edge_index.clone()
    swapped[:, [1, 2]] = swapped[:, [2, 1]]  # bond 0's reverse direction moved away from column 1
    with pytest.raises(ValueError, match="edge_index: columns 2b and 2b"):
        enc.encode(batch.x, swapped, batch.edge_attr, batch.batch, 4)
    with pytest.raises(ValueError, match="model.hidden"):
        models.create("grover_tiny", hidden=0)


@pytest.mark.parametrize("view", ["atom", "bond"])
def test_dympn_equals_one_network_at_a_time(view):
    from models.grover import DyMPN

    batch = synthetic_batch()
    enc = small()
    g = enc.graph(batch.x, batch.edge_index, batch.edge_attr, batch.batch, 4)
    torch.manual_seed(0)
    mpn = DyMPN(8, 3, depth=3, view=view).eval()
    with torch.no_grad():
        mpn.slope.copy_(torch.tensor([0.1, 0.25, 0.5]))
    n = batch.x.shape[0] if view == "atom" else batch.edge_index.shape[1]
    h = torch.randn(n, 8)
    got = mpn(h, g)
    src, dst = batch.edge_index
    for s in range(3):
        m = h
        for _ in range(3):
            if view == "atom":  # sum over neighbouring atoms
                agg = torch.stack([m[src[dst == a]].sum(0) for a in range(n)])
            else:  # bond u->v: messages into u except the one from v
                agg = torch.stack([m[(dst == src[b]) & (src != dst[b])].sum(0) for b in range(n)])
            z = h + agg @ mpn.weight[s]
            m = torch.where(z >= 0, z, mpn.slope[s] * z)
        torch.testing.assert_close(got[s], m, atol=1e-5, rtol=1e-5)
