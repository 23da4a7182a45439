"""Molecule dataset: feature cache, balanced scaffold split, descriptors, batches, and the registered modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

import modalities
from modalities.base import DataError
from modalities.molecules import dataset as D
from modalities.molecules import featurize as F
from modalities.molecules import readers

RINGS = ["c1ccccc1", "c1ccncc1", "C1CCCCC1", "C1CCNCC1", "c1ccoc1", "c1ccsc1", "C1CCOC1", "c1cnccn1",
         "C1CC1", "C1CCC1", "c1ccc2ccccc2c1", "C1CCNC1"]
SUBSTITUENTS = ["C", "CC", "O", "N", "Cl", "F", "OC(=O)", "OC", "N#C", "CCC", "NC(=O)", "Br"]


def _corpus() -> list[str]:
    """Scaffold groups of uneven size (1..12 members), plus acyclic molecules (empty scaffold)."""
    out = []
    for k, ring in enumerate(RINGS):
        for sub in SUBSTITUENTS[: 1 + k % 12]:
            out.append(f"{sub}{ring}")
    chains = ["C" * n + tail for n in range(1, 9) for tail in ("O", "N", "Cl")]
    out += chains
    # many singleton scaffolds: two rings joined by a chain of varying length
    for n in range(1, 11):
        for a, b in (("c1ccccc1", "C1CCCCC1"), ("c1ccncc1", "C1CCOC1"), ("c1ccsc1", "C1CCNCC1")):
            out.append(a + "C" * n + b)
    return out


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mols") / "corpus.smi"
    path.write_text("\n".join(_corpus()) + "\n")
    return path


def test_balanced_scaffold_split_on_strings():
    scaffolds = ["A"] * 30 + ["B"] * 12 + ["C"] * 6 + [f"s{i}" for i in range(52)]
    train, val, test = D.scaffold_split(scaffolds, seed=3)
    n = len(scaffolds)
    assert abs(len(train) - 80) <= 1 and abs(len(val) - 10) <= 1 and len(train) + len(val) + len(test) == n
    assert set(train) | set(val) | set(test) == set(range(n))
    parts = [{scaffolds[i] for i in p} for p in (train, val, test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert "A" in parts[0] and "B" in parts[0]  # big scaffold sets go to train first
    again = D.scaffold_split(scaffolds, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = D.scaffold_split(scaffolds, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip((train, val, test), other))


def test_scaffold_split_of_a_dataset(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    smiles = readers.read_file(corpus_file).smiles
    n = len(smiles)
    # scaffolds computed here, independently of the dataset's cache
    scaffold = [MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(s), includeChirality=False) for s in smiles]
    sets = {}
    for split in ("train", "val", "test"):
        ds = D.MoleculeDataset(corpus_file, split, seed=7, cache_dir=cache)
        sets[split] = {ds.smiles(i) for i in range(len(ds))}
        assert len(ds) == len(ds.split_indices[split])
    sizes = {k: len(ds.split_indices[k]) for k in ("train", "val", "test")}
    assert abs(sizes["train"] - int(0.8 * n)) <= 1 and abs(sizes["val"] - int(0.1 * n)) <= 1
    assert sum(sizes.values()) == n
    by_smiles = dict(zip(smiles, scaffold))
    groups = [{by_smiles[s] for s in sets[k]} for k in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    same = D.MoleculeDataset(corpus_file, "val", seed=7, cache_dir=cache)
    assert {same.smiles(i) for i in range(len(same))} == sets["val"]


def test_random_split_sizes_and_seed():
    train, val, test = D.random_split(101, seed=1)
    assert (len(train), len(val), len(test)) == (80, 10, 11)
    assert np.array_equal(train, D.random_split(101, seed=1)[0])
    assert not np.array_equal(train, D.random_split(101, seed=2)[0])
    with pytest.raises(DataError, match="data.split_fractions"):
        D.random_split(10, (0.5, 0.6, 0.1))


def test_cache_hit_does_not_featurise_again(corpus_file, tmp_path, monkeypatch):
    calls = {"graph": 0, "read": 0}
    graph_arrays, read_file = F.graph_arrays, readers.read_file

    def counting_graph(mol):
        calls["graph"] += 1
        return graph_arrays(mol)

    def counting_read(*args, **kwargs):
        calls["read"] += 1
        return read_file(*args, **kwargs)

    monkeypatch.setattr(F, "graph_arrays", counting_graph)
    monkeypatch.setattr(readers, "read_file", counting_read)
    cold = D.MoleculeDataset(corpus_file, "train", cache_dir=tmp_path)
    assert calls == {"graph": len(_corpus()), "read": 1}  # every molecule of the file, once
    calls.update(graph=0, read=0)
    warm = D.MoleculeDataset(corpus_file, "train", cache_dir=tmp_path)
    assert calls == {"graph": 0, "read": 0}
    for i in (0, len(warm) - 1):
        a, b = cold[i], warm[i]
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and a.smiles == b.smiles
    # a changed file is a cache miss
    changed = tmp_path / "changed.smi"
    changed.write_text(corpus_file.read_text() + "CCOCC\n")
    D.MoleculeDataset(changed, "train", cache_dir=tmp_path)
    assert calls["graph"] == len(_corpus()) + 1


def test_large_files_are_cached_in_parts(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setattr(D, "PART_SIZE", 25)
    ds = D.MoleculeDataset(corpus_file, "all", split_kind="random", cache_dir=tmp_path)
    n = len(_corpus())
    assert len(ds.shards) == -(-n // 25) and len(ds) == n
    smiles = readers.read_file(corpus_file).smiles
    for i in (0, 24, 25, 26, n - 1):  # both sides of part boundaries
        assert ds.smiles(i) == smiles[i] and torch.equal(ds[i].x, F.featurize(smiles[i]).x)
    assert D.MoleculeDataset(corpus_file, "all", split_kind="random", cache_dir=tmp_path).vocab == ds.vocab


def test_items_match_featurize_and_batch_like_the_loop(corpus_file, tmp_path):
    ds = D.MoleculeDataset(corpus_file, "train", cache_dir=tmp_path, split_kind="random")
    item = ds[(3, 12345)]  # the loop's (index, seed) key
    direct = F.featurize(ds.smiles(3), ds.vocab)
    for key in ("x", "edge_index", "edge_attr", "atom_key", "bond_key", "motif"):
        assert torch.equal(getattr(item, key), getattr(direct, key)), key
    assert item.x.dtype == torch.float32 and item.edge_index.dtype == torch.int64
    assert int(item.atom_key.min()) >= 1  # every key of a training molecule is in the vocabulary
    samples = [dict(ds[i]) | {"seed": 100 + i} for i in range(4)]  # KeyedDataset hands dicts with a seed
    batch = modalities.get("molecules").collate(samples)
    assert batch.num_graphs == 4 and batch["seed"].tolist() == [100, 101, 102, 103] and len(batch["seed"]) == 4
    assert tuple(batch.motif.shape) == (4, 85) and batch.smiles == [ds.smiles(i) for i in range(4)]
    n0 = ds[0].num_nodes
    assert torch.equal(batch.edge_index[:, ds[0].num_edges:ds[0].num_edges + ds[1].num_edges], ds[1].edge_index + n0)
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(ds.vocab.to_json())
    reused = modalities.get("molecules").build_dataset({"path": str(corpus_file), "cache_dir": str(tmp_path),
                                                        "vocab": str(vocab_file), "split": "random"}, "val", 0)
    assert reused.vocab == ds.vocab


def test_targets_and_descriptors(tmp_path):
    path = tmp_path / "props.csv"
    rows = [f"{s},{i * 0.5}" for i, s in enumerate(_corpus()[:40])]
    path.write_text("smiles,logp\n" + "\n".join(rows) + "\n")
    ds = D.MoleculeDataset(path, "train", split_kind="random", targets=["LogP"], descriptors=True,
                           cache_dir=tmp_path / "cache")
    item = ds[0]
    assert tuple(item.y.shape) == (1, 1) and tuple(item.descriptors.shape) == (1, len(D.descriptor_names()))
    all_desc = np.stack([ds[i].descriptors[0].numpy() for i in range(len(ds))])
    assert np.isfinite(all_desc).all() and np.abs(all_desc.mean(0)).max() < 1e-3  # z-scored on train statistics
    assert ds.targets().shape == (len(ds), 1)


def test_descriptor_scaler_is_nan_safe():
    values = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0]])
    scaler = D.DescriptorScaler.fit(values)
    out = scaler(np.array([[2.0, np.inf, 7.0], [np.nan, 1.0, 5.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]])


def test_modality_registration_recipe_and_default_data(tmp_path):
    import yaml

    mod = modalities.get("molecules")
    assert "molecules" in modalities.names() and mod.sample_kind == "graph" and not mod.view_augmentations
    recipe = yaml.safe_load(mod.recipe.read_text())
    assert recipe["objective"]["name"] == "grover" and recipe["model"]["name"] == "grover_tiny"
    assert recipe["train"]["batch_size"] == 32 and recipe["objective"]["mask_rate"] == 0.15
    assert recipe["demo"]["train"]["max_steps"] <= 100
    folder = mod.default_data(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["chembl_drugs.csv", "chembl_samples.csv", "first_5K.smi"]
    assert len(readers.read_file(folder / "chembl_drugs.csv")) > 1900
    nci = readers.read_file(folder / "first_5K.smi")  # RDKit's NCI sample: 4 999 lines, 8 RDKit cannot parse
    assert len(nci) == 4991 and len(nci.skipped) == 8
    with pytest.raises(DataError, match="data.path"):
        mod.build_dataset({}, "train", 0)
