"""The grover objective: targets are masked, the loss is the reference's formula, it trains, and the vocabulary
travels with the exported encoder."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import models
from models.grover import BRANCHES, GTransEncoder
from pretrain import objectives
from pretrain.config import ConfigError
from pretrain.loop import KeyedDataset
from pretrain.objectives.grover_tasks import GroverTasks
from tests.models.test_grover import synthetic_batch, synthetic_molecule

from torch_geometric.data import Batch  # noqa: E402  (test_grover skips the module without torch_geometric)

ATOM_VOCAB, BOND_VOCAB = 12, 7


pytestmark = pytest.mark.usefixtures("one_thread")


class FakeVocabulary:
    n_atom, n_bond = ATOM_VOCAB, BOND_VOCAB

    def to_json(self) -> str:
        return json.dumps({"atoms": ["<unk>", "C_C-SINGLE1"], "bonds": ["<unk>"]})


def objective(hidden: int = 24, **kw) -> GroverTasks:
    torch.manual_seed(0)
    enc = GTransEncoder(hidden=hidden, heads=2, depth=2)
    return GroverTasks(enc, **{"atom_vocab_size": ATOM_VOCAB, "bond_vocab_size": BOND_VOCAB, **kw})


def seeded(batch: Batch, seeds=None) -> Batch:
    batch.seed = torch.tensor(seeds if seeds is not None else [11 * (i + 1) for i in range(batch.num_graphs)])
    return batch


def test_registered_for_graph_samples():
    cls = objectives.get("grover")
    assert cls is GroverTasks and cls.sample_kinds == ("graph",) and cls.views == 0
    obj = objectives.create(models.create("grover_tiny", hidden=16), {"name": "grover", "atom_vocab_size": 5,
                                                                       "bond_vocab_size": 4})
    assert obj.atom_vocab_from_atom.out_features == 5
    with pytest.raises(ConfigError, match="objective.mask_token"):
        objective(mask_token="random")
    with pytest.raises(ConfigError, match="not a GROVER encoder"):
        GroverTasks(models.create("vit1d_xs"), atom_vocab_size=5, bond_vocab_size=4)


def test_targets_follow_the_seeds_and_the_ratio():
    obj = objective()
    batch = seeded(synthetic_batch(sizes=(9, 14, 1, 20)))
    a1, b1 = obj.targets(batch)
    a2, b2 = obj.targets(batch)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    per_mol = torch.bincount(batch.batch[a1], minlength=4).tolist()
    assert per_mol == [math.ceil(0.15 * n) for n in (9, 14, 1, 20)]
    n_bonds = torch.bincount(batch.batch[batch.edge_index[0, 0::2]], minlength=4)
    assert torch.bincount(batch.batch[batch.edge_index[0, 0::2]][b1], minlength=4).tolist() == \
        [math.ceil(0.15 * int(n)) for n in n_bonds]
    # a molecule's targets depend on its own seed only, not on its neighbours in the batch
    other = seeded(synthetic_batch(sizes=(9, 14, 1, 20)), seeds=[11, 999, 33, 44])
    a3, _ = obj.targets(other)
    first = batch.batch == 0
    assert torch.equal(a3[first], a1[first]) and not torch.equal(a3[batch.batch == 1], a1[batch.batch == 1])


@pytest.mark.parametrize("mask_token", ["learned", "zero"])
def test_target_inputs_are_masked(mask_token):
    obj = objective(mask_token=mask_token).eval()  # eval: fixed depth, no dropout
    batch = seeded(synthetic_batch())
    atom_t, bond_t = obj.targets(batch)
    base = obj(batch)["loss"]
    changed = batch.clone()
    changed.x[atom_t] = torch.rand(int(atom_t.sum()), 151)  # the targets' own features ...
    bond_cols = bond_t.repeat_interleave(2)
    changed.edge_attr[bond_cols] = torch.rand(int(bond_cols.sum()), 14)
    assert obj(changed)["loss"].item() == base.item()  # ... are invisible
    visible = batch.clone()
    visible.x[~atom_t] = torch.rand(int((~atom_t).sum()), 151)
    assert obj(visible)["loss"].item() != base.item()  # the test can see a change
    leak = objective(mask_token="none").eval()  # the reference's behaviour: targets stay visible
    assert leak(changed)["loss"].item() != leak(batch)["loss"].item()


class FixedBranches(nn.Module):
    """An "encoder" that returns given branch tensors, to check the loss against an independent computation."""

    def __init__(self, branches: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.branches = branches
        self.hidden, self.atom_dim, self.bond_dim = 2, 151, 14
        self.seen_x = None

    def encode(self, x, edge_index, edge_attr, batch, num_graphs):
        self.seen_x = x
        return self.branches


def _ce(logits: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def _log_softmax(logits: list[float]) -> list[float]:
    lse = math.log(sum(math.exp(v) for v in logits))
    return [v - lse for v in logits]


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_loss_equals_hand_computation():
    # two molecules: A = 3 atoms in a chain (bonds 0-1, 1-2), B = 2 atoms (bond 0-1); every atom and bond a target
    mol_a, mol_b = synthetic_molecule(3, 0, chain=True), synthetic_molecule(2, 1, chain=True)
    batch = Batch.from_data_list([mol_a, mol_b])
    batch.atom_key = torch.tensor([1, 2, 0, 2, 1])
    batch.bond_key = torch.tensor([1, 1, 0, 0, 2, 2])
    batch.motif = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.Generator().manual_seed(3)
    branches = {b: torch.randn(5 if b.startswith("atom") else 6, 2, generator=g) for b in BRANCHES}
    obj = GroverTasks(FixedBranches(branches), atom_vocab_size=3, bond_vocab_size=3, motif_size=2, mask_rate=1.0,
                      dist_coff=0.1)
    with torch.no_grad():
        for p in obj.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    out = obj(batch)

    def lin(layer: nn.Linear, h: list[float]) -> list[float]:
        w, b = layer.weight.tolist(), layer.bias.tolist()
        return [sum(wi * hi for wi, hi in zip(row, h)) + bi for row, bi in zip(w, b)]

    rows = {b: t.tolist() for b, t in branches.items()}
    av = {b: [lin(head, h) for h in rows[b]] for b, head in (("atom_from_atom", obj.atom_vocab_from_atom),
                                                              ("atom_from_bond", obj.atom_vocab_from_bond))}
    bv = {}
    for b, head in (("bond_from_atom", obj.bond_vocab_from_atom), ("bond_from_bond", obj.bond_vocab_from_bond)):
        bv[b] = [[u + v for u, v in zip(lin(head.linear, rows[b][2 * i]), lin(head.linear_rev, rows[b][2 * i + 1]))]
                 for i in range(3)]
    atom_keys, bond_keys = [1, 2, 0, 2, 1], [1, 0, 2]
    ce = {b: sum(_ce(av[b][i], atom_keys[i]) for i in range(5)) / 5 for b in av}
    ce.update({b: sum(_ce(bv[b][i], bond_keys[i]) for i in range(3)) / 3 for b in bv})
    members = {"atom": [[0, 1, 2], [3, 4]], "bond": [[0, 1, 2, 3], [4, 5]]}
    fg = {}
    for b in BRANCHES:
        means = [[sum(rows[b][i][d] for i in m) / len(m) for d in range(2)] for m in members[b[:4]]]
        fg[b] = [lin(obj.motif_heads[b], r) for r in means]
    labels = [[1.0, 0.0], [0.0, 1.0]]
    bce = {b: sum(-(y * math.log(_sig(z)) + (1 - y) * math.log(1 - _sig(z)))
                  for zs, ys in zip(fg[b], labels) for z, y in zip(zs, ys)) / 4 for b in BRANCHES}

    def mse(a: list[list[float]], b: list[list[float]]) -> float:
        flat = [(u - v) ** 2 for ra, rb in zip(a, b) for u, v in zip(ra, rb)]
        return sum(flat) / len(flat)

    av_dist = mse([_log_softmax(r) for r in av["atom_from_atom"]], [_log_softmax(r) for r in av["atom_from_bond"]])
    bv_dist = mse([_log_softmax(r) for r in bv["bond_from_atom"]], [_log_softmax(r) for r in bv["bond_from_bond"]])
    sig = lambda m: [[_sig(z) for z in r] for r in m]  # noqa: E731
    fg_dist = mse(sig(fg["atom_from_atom"]), sig(fg["atom_from_bond"])) + \
        mse(sig(fg["bond_from_atom"]), sig(fg["bond_from_bond"]))
    want = sum(ce.values()) + sum(bce.values()) + 0.1 * (av_dist + bv_dist) + fg_dist
    assert out["loss"].item() == pytest.approx(want, rel=1e-5)
    assert out["av_atom_loss"].item() == pytest.approx(ce["atom_from_atom"], rel=1e-5)
    assert out["motif_loss"].item() == pytest.approx(sum(bce.values()), rel=1e-5)
    # every atom was a target: the encoder saw only the mask vector
    assert torch.equal(obj.encoder.seen_x, obj.atom_mask_token.detach().expand(5, 151))


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss():
    obj = objective(hidden=32)
    batch = seeded(synthetic_batch(sizes=(9, 14, 6, 11)))
    opt = torch.optim.Adam(obj.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        out = obj(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert set(out) >= {"av_atom_loss", "bv_atom_loss", "motif_loss", "dist_loss", "av_acc", "bv_acc", "motif_acc"}


def test_vocabulary_from_the_dataset_is_exported_beside_the_encoder(tmp_path):
    class Molecules(torch.utils.data.Dataset):
        vocab = FakeVocabulary()

        def __len__(self):
            return 4

        def __getitem__(self, key):
            return synthetic_molecule(5 + int(key[0]), int(key[0]))

    torch.manual_seed(0)
    obj = GroverTasks(models.create("grover_tiny", hidden=16), mask_token="learned")
    obj.bind_dataset(KeyedDataset(Molecules()))
    assert (obj.atom_vocab_from_atom.out_features, obj.bond_vocab_from_bond.linear.out_features) == (12, 7)
    # the loop's keyed samples: graph samples get a seed attribute and batch into batch.seed
    keyed = KeyedDataset(Molecules())
    batch = Batch.from_data_list([keyed[(i, 100 + i)] for i in range(4)])
    assert batch.seed.tolist() == [100, 101, 102, 103]
    assert torch.isfinite(obj(batch)["loss"])
    models.save_pretrained(obj.export_encoder(), tmp_path / "encoder")
    obj.export_files(tmp_path / "encoder")
    assert json.loads((tmp_path / "encoder" / "vocab.json").read_text())["atoms"][1] == "C_C-SINGLE1"
    assert isinstance(models.load_pretrained(tmp_path / "encoder"), GTransEncoder)
    with pytest.raises(ConfigError, match="objective.atom_vocab_size: 5 is narrower"):
        GroverTasks(GTransEncoder(hidden=16), atom_vocab_size=5, bond_vocab_size=7).bind_dataset(Molecules())
    with pytest.raises(ConfigError, match="no vocabulary"):
        GroverTasks(GTransEncoder(hidden=16)).bind_dataset(list(range(3)))


# ------------------------------------------------------------------ real molecules through the data side

SMILES = ["CCO", "C", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1OC(C)=O",
          "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "C1CCNCC1", "ClC(Cl)Cl", "N#Cc1ccc(cc1)C(F)(F)F"]


class Graphs(list):
    """A list of graphs indexed by the loop's ``(index, seed)`` keys."""

    def __getitem__(self, key):
        return list.__getitem__(self, key[0])


def test_real_molecules_from_the_featuriser_train():
    from modalities.molecules import collate
    from modalities.molecules.featurize import Vocabulary, featurize

    vocab = Vocabulary.build(SMILES)
    graphs = [featurize(s, vocab) for s in SMILES]
    keyed = KeyedDataset(Graphs(graphs))
    batch = collate([keyed[(i, 7 + i)] for i in range(len(graphs))])  # as the loop batches them
    torch.manual_seed(0)
    obj = GroverTasks(GTransEncoder(hidden=32, heads=2, depth=3))
    obj.bind_vocabulary(vocab)
    assert (obj.atom_vocab_size, obj.bond_vocab_size) == (vocab.n_atom, vocab.n_bond)
    atom_t, bond_t = obj.targets(batch)
    sizes = torch.bincount(batch.batch).tolist()
    assert torch.bincount(batch.batch[atom_t], minlength=len(sizes)).tolist() == [math.ceil(0.15 * n) for n in sizes]
    assert batch.motif.shape == (len(SMILES), 85) and sizes[1] == 1  # methane: one atom, no bond
    opt = torch.optim.Adam(obj.parameters(), lr=2e-3)
    first = None
    for _ in range(15):
        out = obj(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert out["loss"].item() < 0.7 * first
    assert obj.embed(batch).shape == (len(SMILES), 64)


@pytest.mark.slow
def test_training_loop_on_a_small_molecule_file(tmp_path, run_cache):
    """The loop end to end on real molecules: graph batches, vocabulary bound from the dataset, vocab.json."""
    import modalities
    from pretrain import config as config_mod
    from pretrain.loop import read_metrics, train

    data = tmp_path / "mols.smi"
    data.write_text("\n".join(SMILES * 3) + "\n")
    overrides = ["train.threads=1", "train.num_workers=0", "train.log_every=1", "train.rankme_every=2",
                 "optim.warmup_steps=1", "model.hidden=32", "objective.atom_vocab_size=0",
                 "objective.bond_vocab_size=0"]
    cfg = config_mod.resolve(modalities.get("molecules").recipe, overrides=overrides,
                             extra={"data": {"path": str(data)}, "train": {"max_steps": 4, "batch_size": 8}})
    result = train(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(result.run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) and "av_atom_loss" in r and "motif_loss" in r for r in rows)
    assert "rankme" in rows[1]
    vocab = json.loads((result.encoder_dir / "vocab.json").read_text())
    assert vocab["atom_keys"][0] == "<unk>" and len(vocab["atom_keys"]) > 5
    enc = models.load_pretrained(result.encoder_dir)
    assert isinstance(enc, GTransEncoder) and enc.hidden == 32
