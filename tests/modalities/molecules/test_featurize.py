"""GROVER featurisation against hand-derived vectors, context keys and motif labels against RDKit's own counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import Descriptors

from modalities.molecules import featurize as F

# Column offsets written out by hand from GROVER's layout (atomic number 101, degree 7, charge 6, chirality 5,
# H count 6, hybridisation 6, aromatic, mass, implicit valence 8, acceptor, donor, acidic, basic, ring 3..8).
Z0, DEG0, CHG0, CHI0, H0, HYB0 = 0, 101, 108, 114, 119, 125
AROM, MASS, VAL0, ACC, DON, ACID, BASE, RING0 = 131, 132, 133, 141, 142, 143, 144, 145
CHARGE_COL = {-1: 108, -2: 109, 1: 110, 2: 111, 0: 112, "other": 113}
SP, SP2, SP3 = 125, 126, 127


def atom_vector(z, degree, charge, hs, hyb, mass, implicit, chiral=0, aromatic=0, acc=0, don=0, acid=0, base=0,
                rings=()):
    v = np.zeros(151, dtype=np.float32)
    v[Z0 + z - 1] = 1
    v[DEG0 + degree] = 1
    v[CHARGE_COL.get(charge, 113)] = 1
    v[CHI0 + chiral] = 1
    v[H0 + hs] = 1
    v[hyb] = 1
    v[AROM] = aromatic
    v[MASS] = mass / 100
    v[VAL0 + implicit] = 1
    v[ACC], v[DON], v[ACID], v[BASE] = acc, don, acid, base
    for r in rings:
        v[RING0 + r - 3] = 1
    return v


def bond_vector(kind, conjugated=0, ring=0, stereo=0):
    v = np.zeros(14, dtype=np.float32)
    v[{"single": 1, "double": 2, "triple": 3, "aromatic": 4}[kind]] = 1
    v[5], v[6] = conjugated, ring
    v[7 + stereo] = 1
    return v


C, N, O = 12.011, 14.007, 15.999


def test_dimensions():
    assert F.ATOM_DIM == 151 and F.BOND_DIM == 14
    d = F.featurize("CCO")
    assert d.x.dtype == F.torch.float32 and d.edge_index.dtype == F.torch.int64
    assert tuple(d.x.shape) == (3, 151) and tuple(d.edge_attr.shape) == (4, 14) and tuple(d.motif.shape) == (1, 85)
    assert tuple(d.atom_key.shape) == (3,) and tuple(d.bond_key.shape) == (4,)


def test_ammonium():
    x = F.featurize("[NH4+]").x.numpy()
    # bracket hydrogens are explicit: implicit valence 0; donor (N, H, v4, +1) and basic (cation)
    expected = atom_vector(7, degree=4, charge=1, hs=4, hyb=SP3, mass=N, implicit=0, don=1, base=1)
    np.testing.assert_allclose(x[0], expected, atol=1e-4)


def test_acetate():
    d = F.featurize("CC(=O)[O-]")
    x = d.x.numpy()
    methyl = atom_vector(6, degree=4, charge=0, hs=3, hyb=SP3, mass=C, implicit=3)
    carboxyl = atom_vector(6, degree=3, charge=0, hs=0, hyb=SP2, mass=C, implicit=0, acid=1)
    carbonyl_o = atom_vector(8, degree=1, charge=0, hs=0, hyb=SP2, mass=O, implicit=0, acc=1)
    oxide = atom_vector(8, degree=1, charge=-1, hs=0, hyb=SP2, mass=O, implicit=0, acc=1)
    for i, v in enumerate((methyl, carboxyl, carbonyl_o, oxide)):
        np.testing.assert_allclose(x[i], v, atol=1e-4, err_msg=f"atom {i}")
    assert d.x[3, 108] == 1 and d.x[3, 112] == 0  # charge -1 in its own slot


def test_charge_slots():
    for smiles, col in (("[Mg+2]", 111), ("[S-2]", 109), ("[Fe+3]", 113), ("[Cl-]", 108)):
        assert F.featurize(smiles).x[0, 108:114].nonzero().flatten().tolist() == [col - 108], smiles


def test_benzene():
    d = F.featurize("c1ccccc1")
    expected = atom_vector(6, degree=3, charge=0, hs=1, hyb=SP2, mass=C, implicit=1, aromatic=1, rings=(6,))
    np.testing.assert_allclose(d.x.numpy(), np.tile(expected, (6, 1)), atol=1e-4)
    np.testing.assert_array_equal(d.edge_attr.numpy(), np.tile(bond_vector("aromatic", 1, 1), (12, 1)))


def test_pyridine_nitrogen_and_pyrrole_nitrogen():
    x = F.featurize("c1ccncc1").x.numpy()
    expected = atom_vector(7, degree=2, charge=0, hs=0, hyb=SP2, mass=N, implicit=0, aromatic=1, acc=1, rings=(6,))
    np.testing.assert_allclose(x[3], expected, atol=1e-4)
    x = F.featurize("c1cc[nH]c1").x.numpy()
    expected = atom_vector(7, degree=3, charge=0, hs=1, hyb=SP2, mass=N, implicit=0, aromatic=1, don=1, rings=(5,))
    np.testing.assert_allclose(x[3], expected, atol=1e-4)


def test_nitrile_and_small_rings():
    x = F.featurize("CC#N").x.numpy()
    np.testing.assert_allclose(x[2], atom_vector(7, 1, 0, 0, SP, N, 0, acc=1), atol=1e-4)
    d = F.featurize("C1CC1")
    assert d.x[:, RING0:].sum(0).tolist() == [3, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(d.edge_attr[0].numpy(), bond_vector("single", 0, 1))
    assert F.featurize("CC#N").edge_attr[2, 3] == 1  # bond 1 (triple), first direction


def test_stereo_bonds_and_edge_order():
    trans = F.featurize("F/C=C/F")
    cis = F.featurize("F/C=C\\F")
    # bonds F0-C1, C1=C2, C2-F3; bond b -> edges 2b (begin->end) and 2b+1 (end->begin)
    assert trans.edge_index.tolist() == [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]
    assert trans.edge_attr[2, 2] == 1 and trans.edge_attr[3, 2] == 1  # double
    assert trans.edge_attr[2, 7:].nonzero().flatten().tolist() == [3]  # STEREOE = 3
    assert cis.edge_attr[2, 7:].nonzero().flatten().tolist() == [2]  # STEREOZ = 2
    assert trans.edge_attr[0, 7:].nonzero().flatten().tolist() == [0]  # single bond: no stereo


def test_chirality_tags():
    ccw = F.featurize("C[C@H](N)C(=O)O").x  # '@' = counter-clockwise in SMILES order
    cw = F.featurize("C[C@@H](N)C(=O)O").x
    flat = F.featurize("CC(N)C(=O)O").x
    assert ccw[1, CHI0:CHI0 + 5].tolist() == [0, 0, 1, 0, 0]
    assert cw[1, CHI0:CHI0 + 5].tolist() == [0, 1, 0, 0, 0]
    assert flat[1, CHI0:CHI0 + 5].tolist() == [1, 0, 0, 0, 0]


def test_heavy_atom_number():
    x = F.featurize("[U]").x
    assert x[0, :101].nonzero().flatten().tolist() == [91]


def test_context_keys_by_hand():
    mol = Chem.MolFromSmiles("CC(=O)O")
    atoms, bonds = F.context_keys(mol)
    assert atoms == ["C_C-SINGLE1", "C_C-SINGLE1_O-DOUBLE1_O-SINGLE1", "O_C-DOUBLE1", "O_C-SINGLE1"]
    single, double = "(SINGLE-STEREONONE-NONE)", "(DOUBLE-STEREONONE-NONE)"
    assert bonds[0] == f"{single}_C-{double}1_C-{single}1"  # C0-C1: the other bonds of C1
    assert bonds[1] == f"{double}_C-{single}2"  # C1=O2: C1's two single bonds
    assert [F.context_key(a) for a in mol.GetAtoms()] == atoms
    assert [F.bond_context_key(b) for b in mol.GetBonds()] == bonds


@pytest.mark.parametrize("smiles", ["CC(=O)Nc1ccc(O)cc1", "C[N+](C)(C)CC(=O)[O-]", "O=S(=O)(N)c1ccc(Cl)cc1",
                                    "C1CC2CCC1C2", "F/C=C/F"])
def test_context_keys_match_rdkit_counts(smiles):
    mol = Chem.MolFromSmiles(smiles)
    atoms, _ = F.context_keys(mol)
    for atom, key in zip(mol.GetAtoms(), atoms):
        symbol, *parts = key.split("_")
        assert symbol == atom.GetSymbol()
        parsed = Counter()
        for p in parts:
            pair, count = p.rstrip("0123456789"), int(p[len(p.rstrip("0123456789")):])
            parsed[pair] = count
        # RDKit's own neighbour list, counted from the bond table
        truth = Counter()
        for bond in mol.GetBonds():
            if atom.GetIdx() in (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()):
                other = mol.GetAtomWithIdx(bond.GetOtherAtomIdx(atom.GetIdx()))
                truth[f"{other.GetSymbol()}-{bond.GetBondType()}"] += 1
        assert parsed == truth
        assert sum(parsed.values()) == atom.GetDegree()
        assert [p.rstrip("0123456789") for p in parts] == sorted(truth)


def test_motif_labels_by_hand_and_against_descriptors():
    names = F.motif_names()
    assert len(names) == 85 and list(names) == sorted(names) and names[0] == "fr_Al_COO"
    aspirin = F.featurize("CC(=O)Oc1ccccc1C(=O)O").motif[0]
    on = {names[i] for i in aspirin.nonzero().flatten().tolist()}
    assert {"fr_ester", "fr_benzene", "fr_COO", "fr_Ar_COO"} <= on
    assert not {"fr_amide", "fr_phenol", "fr_nitro", "fr_halogen"} & on
    descriptors = dict(Descriptors._descList)  # RDKit's descriptor table, a separate route to the counts
    for smiles in ("CC(=O)Nc1ccc(O)cc1", "c1ccc2[nH]ccc2c1", "CCOC(=O)C1CCN(C)CC1", "Clc1ccc(Br)cc1[N+](=O)[O-]"):
        mol = Chem.MolFromSmiles(smiles)
        expected = [float(descriptors[n](mol) > 0) for n in names]
        assert F.featurize(mol).motif[0].tolist() == expected, smiles


def test_vocabulary_build_index_and_json():
    vocab = F.Vocabulary.build(["CCO", "CC"])
    # C_C-SINGLE1 seen 3 times; the two keys seen once are ordered alphabetically
    assert vocab.atom_keys == ("<unk>", "C_C-SINGLE1", "C_C-SINGLE1_O-SINGLE1", "O_C-SINGLE1")
    assert vocab.atom_index("N_C-SINGLE1") == 0
    d = F.featurize("CCO", vocab)
    assert d.atom_key.tolist() == [1, 2, 3]
    assert d.bond_key[0] == d.bond_key[1] and d.bond_key[2] == d.bond_key[3] and d.bond_key.min() > 0
    rare = F.Vocabulary.build(["CCO", "CC"], min_count=2)
    assert rare.atom_keys == ("<unk>", "C_C-SINGLE1")
    assert F.featurize("CCO", rare).atom_key.tolist() == [1, 0, 0]
    again = F.Vocabulary.from_json(vocab.to_json())
    assert again == vocab and again.motif_names() == F.motif_names()
    capped = F.Vocabulary.build(["CCO", "CC"], max_atom=2)
    assert capped.n_atom == 2
    with pytest.raises(ValueError, match="vocabulary JSON"):
        F.Vocabulary.from_json("{not json")


def test_invalid_smiles_names_it():
    with pytest.raises(ValueError, match="C1CC"):
        F.featurize("C1CC")
