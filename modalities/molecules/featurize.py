"""GROVER featurisation of a molecule into a ``torch_geometric.data.Data`` graph, and its pretext labels.

Rong et al., "Self-Supervised Graph Transformer on Large-Scale Molecular Data" (GROVER, NeurIPS 2020). Every atom
is a node with 151 features and every bond two directed edges with 14 features each:

Atom features ``x`` float32[n_atoms, 151] (``ATOM_LAYOUT`` names the slices; every one-hot has a last "other" slot):

====================  =====  ==========================================================
atomic number         101    Z = 1..100, other
total degree          7      0..5 (hydrogens included), other
formal charge         6      -1, -2, +1, +2, 0, other
chirality tag         5      unspecified, CW, CCW, other (listed by RDKit), other
total H count         6      0..4, other
hybridisation         6      SP, SP2, SP3, SP3D, SP3D2, other
aromatic              1
mass / 100            1
implicit valence      8      0..6, other
H-bond acceptor       1      SMARTS (below)
H-bond donor          1
acidic                1
basic                 1
ring size 3..8        6      atom lies in a ring of that size (SSSR-independent query)
====================  =====  ==========================================================

Bond features ``edge_attr`` float32[2 * n_bonds, 14]: an always-zero "no bond" slot (kept so the layout matches the
reference's 14 columns), single, double, triple, aromatic, conjugated, in ring, stereo one-hot (RDKit ``BondStereo``
0..5: none, any, Z, E, cis, trans; other). Bond ``b`` of RDKit's order gives edges ``2b`` (lower atom index ->
higher) and ``2b + 1`` (back); ``edge_index[0]`` is the source atom, ``edge_index[1]`` the target. The direction is the
reference's (its bonds run ``a1 -> a2`` with ``a1 < a2``), which its two-FC bond head (``W e_2b + W_rev e_2b+1``)
depends on; RDKit's begin atom of a ring-closure bond is the higher index.

The reference places formal charges with Python's negative indexing (charge -1 lands in the "other" slot); here each
listed charge has its own slot, the same information in a cleaner order.

Pretext labels (GROVER section 3.2):

- contextual property of an atom, :func:`context_key`: its symbol plus the sorted counts of
  (neighbour symbol, bond type) pairs one hop away, e.g. the carbonyl carbon of acetic acid is
  ``C_C-SINGLE1_O-DOUBLE1_O-SINGLE1``;
- contextual property of a bond, :func:`bond_context_key`: its (type, stereo, direction) plus the sorted counts of
  (end-atom symbol, other bond's (type, stereo, direction)) over the other bonds of its two end atoms;
- motifs ``motif`` float32[1, 85]: which of RDKit's 85 ``fr_*`` functional-group counts are non-zero
  (:func:`motif_names` gives their sorted order).

Keys become class indices through a :class:`Vocabulary` built on the training corpus (index 0 = ``<unk>``: keys
unseen or rarer than ``min_count``); the vocabulary is saved as JSON with the encoder.

>>> data = featurize("CC(=O)O")
>>> tuple(data.x.shape), tuple(data.edge_index.shape), tuple(data.edge_attr.shape), tuple(data.motif.shape)
((4, 151), (2, 6), (6, 14), (1, 85))
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Union

import numpy as np
import torch
from rdkit import Chem, RDLogger
from torch_geometric.data import Data

ATOM_DIM = 151
BOND_DIM = 14
MOTIF_DIM = 85
FEATURIZER_VERSION = "grover-2"  # part of every cache key: bump it whenever a feature or key changes

Molecule = Union[str, Chem.Mol]

MAX_ATOMIC_NUM = 100
DEGREES = (0, 1, 2, 3, 4, 5)
FORMAL_CHARGES = (-1, -2, 1, 2, 0)
CHIRAL_TAGS = (0, 1, 2, 3)
NUM_HS = (0, 1, 2, 3, 4)
HYBRIDISATIONS = (
    Chem.rdchem.HybridizationType.SP,
    Chem.rdchem.HybridizationType.SP2,
    Chem.rdchem.HybridizationType.SP3,
    Chem.rdchem.HybridizationType.SP3D,
    Chem.rdchem.HybridizationType.SP3D2,
)
IMPLICIT_VALENCES = (0, 1, 2, 3, 4, 5, 6)
RING_SIZES = (3, 4, 5, 6, 7, 8)
BOND_TYPES = (
    Chem.rdchem.BondType.SINGLE,
    Chem.rdchem.BondType.DOUBLE,
    Chem.rdchem.BondType.TRIPLE,
    Chem.rdchem.BondType.AROMATIC,
)
BOND_STEREOS = (0, 1, 2, 3, 4, 5)


def _layout() -> dict[str, slice]:
    sizes = [
        ("atomic_num", MAX_ATOMIC_NUM + 1), ("degree", len(DEGREES) + 1), ("formal_charge", len(FORMAL_CHARGES) + 1),
        ("chiral_tag", len(CHIRAL_TAGS) + 1), ("num_hs", len(NUM_HS) + 1), ("hybridisation", len(HYBRIDISATIONS) + 1),
        ("aromatic", 1), ("mass", 1), ("implicit_valence", len(IMPLICIT_VALENCES) + 1), ("acceptor", 1),
        ("donor", 1), ("acidic", 1), ("basic", 1), ("ring_size", len(RING_SIZES)),
    ]
    out, start = {}, 0
    for name, size in sizes:
        out[name] = slice(start, start + size)
        start += size
    assert start == ATOM_DIM
    return out


ATOM_LAYOUT: dict[str, slice] = _layout()

# Pharmacophore SMARTS of the reference featuriser (the usual RDKit-community definitions).
DONOR_SMARTS = "[$([N;!H0;v3,v4&+1]),$([O,S;H1;+0]),n&H1&+0]"
ACCEPTOR_SMARTS = ("[$([O,S;H1;v2;!$(*-*=[O,N,P,S])]),$([O,S;H0;v2]),$([O,S;-]),$([N;v3;!$(N-*=[O,N,P,S])]),"
                   "n&H0&+0,$([o,s;+0;!$([o,s]:n);!$([o,s]:c:n)])]")
ACIDIC_SMARTS = "[$([C,S](=[O,S,P])-[O;H1,-1])]"
BASIC_SMARTS = ("[#7;+,$([N;H2&+0][$([C,a]);!$([C,a](=O))]),$([N;H1&+0]([$([C,a]);!$([C,a](=O))])[$([C,a]);"
                "!$([C,a](=O))]),$([N;H0&+0]([C;!$(C(=O))])([C;!$(C(=O))])[C;!$(C(=O))])]")


@lru_cache(maxsize=1)
def _patterns() -> tuple[Chem.Mol, Chem.Mol, Chem.Mol, Chem.Mol]:
    return tuple(Chem.MolFromSmarts(s) for s in (ACCEPTOR_SMARTS, DONOR_SMARTS, ACIDIC_SMARTS, BASIC_SMARTS))


@lru_cache(maxsize=1)
def _motif_functions() -> tuple[tuple[str, object], ...]:
    from rdkit.Chem import Fragments

    found = sorted((name, getattr(Fragments, name)) for name in dir(Fragments) if name.startswith("fr_"))
    if len(found) != MOTIF_DIM:  # a new RDKit may add fragments: the label layout must not shift silently
        raise RuntimeError(f"rdkit.Chem.Fragments has {len(found)} fr_* descriptors, GROVER's motif task uses 85")
    return tuple(found)


def motif_names() -> tuple[str, ...]:
    """The 85 RDKit ``fr_*`` functional-group descriptors in sorted name order (the columns of ``motif``)."""
    return tuple(name for name, _ in _motif_functions())


def to_mol(mol_or_smiles: Molecule) -> Chem.Mol:
    """An RDKit molecule from a SMILES string (``ValueError`` naming it when RDKit cannot parse it)."""
    if isinstance(mol_or_smiles, Chem.Mol):
        return mol_or_smiles
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(str(mol_or_smiles))
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ValueError(f"invalid SMILES {str(mol_or_smiles)[:80]!r}")
    return mol


def _slots(choices: tuple) -> dict:
    return {int(c): i for i, c in enumerate(choices)}


_DEGREE, _CHARGE, _CHIRAL, _NUM_HS = _slots(DEGREES), _slots(FORMAL_CHARGES), _slots(CHIRAL_TAGS), _slots(NUM_HS)
_HYBRID, _VALENCE, _STEREO = _slots(HYBRIDISATIONS), _slots(IMPLICIT_VALENCES), _slots(BOND_STEREOS)
_BOND_TYPE = {t: 1 + k for k, t in enumerate(BOND_TYPES)}


def atom_features(mol: Chem.Mol) -> np.ndarray:
    """float32[n_atoms, 151] GROVER atom features (layout in the module docstring and ``ATOM_LAYOUT``)."""
    n = mol.GetNumAtoms()
    x = np.zeros((n, ATOM_DIM), dtype=np.float32)
    if n == 0:
        return x
    L = ATOM_LAYOUT
    hot = np.zeros((n, 7), dtype=np.int64)  # the column set to 1 by each one-hot group, per atom
    mass = np.zeros(n, dtype=np.float32)
    aromatic = np.zeros(n, dtype=np.float32)
    implicit = Chem.ValenceType.IMPLICIT
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        z = atom.GetAtomicNum()
        hot[i] = (
            L["atomic_num"].start + (z - 1 if 1 <= z <= MAX_ATOMIC_NUM else MAX_ATOMIC_NUM),
            L["degree"].start + _DEGREE.get(atom.GetTotalDegree(), len(DEGREES)),
            L["formal_charge"].start + _CHARGE.get(atom.GetFormalCharge(), len(FORMAL_CHARGES)),
            L["chiral_tag"].start + _CHIRAL.get(int(atom.GetChiralTag()), len(CHIRAL_TAGS)),
            L["num_hs"].start + _NUM_HS.get(atom.GetTotalNumHs(), len(NUM_HS)),
            L["hybridisation"].start + _HYBRID.get(int(atom.GetHybridization()), len(HYBRIDISATIONS)),
            L["implicit_valence"].start + _VALENCE.get(atom.GetValence(implicit), len(IMPLICIT_VALENCES)),
        )
        mass[i] = atom.GetMass() * 0.01
        aromatic[i] = atom.GetIsAromatic()
    x[np.arange(n)[:, None], hot] = 1
    x[:, L["aromatic"].start] = aromatic
    x[:, L["mass"].start] = mass
    for name, pattern in zip(("acceptor", "donor", "acidic", "basic"), _patterns()):
        for match in mol.GetSubstructMatches(pattern):
            x[list(match), L[name].start] = 1
    ring = mol.GetRingInfo()
    if ring.NumRings():
        for k, size in enumerate(RING_SIZES):
            col = L["ring_size"].start + k
            for i in range(n):
                if ring.IsAtomInRingOfSize(i, size):
                    x[i, col] = 1
    return x


def bond_features(bond: Chem.Bond) -> np.ndarray:
    """float32[14]: [no-bond (0), single, double, triple, aromatic, conjugated, in ring, stereo 0..5, other]."""
    f = np.zeros(BOND_DIM, dtype=np.float32)
    f[_bond_columns(bond)] = 1
    return f


def _bond_columns(bond: Chem.Bond) -> list[int]:
    cols = [7 + _STEREO.get(int(bond.GetStereo()), len(BOND_STEREOS))]
    t = _BOND_TYPE.get(bond.GetBondType())
    if t is not None:
        cols.append(t)
    if bond.GetIsConjugated():
        cols.append(5)
    if bond.IsInRing():
        cols.append(6)
    return cols


def graph_arrays(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x float32[n, 151], edge_index int64[2, 2m], edge_attr float32[2m, 14])``; edges 2b/2b+1 are bond b,
    2b from its lower atom index to its higher."""
    x = atom_features(mol)
    m = mol.GetNumBonds()
    ends = np.zeros((m, 2), dtype=np.int64)
    attr = np.zeros((m, BOND_DIM), dtype=np.float32)
    for bond in mol.GetBonds():
        b = bond.GetIdx()
        ends[b] = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        attr[b, _bond_columns(bond)] = 1
    edge_index = np.stack([ends, ends[:, ::-1]], axis=1).reshape(2 * m, 2).T.copy()
    return x, edge_index, np.repeat(attr, 2, axis=0)


def motif_labels(mol: Chem.Mol) -> np.ndarray:
    """float32[85]: 1 where RDKit's ``fr_*`` count (sorted names) is non-zero."""
    return np.array([fn(mol) > 0 for _, fn in _motif_functions()], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ context keys

def _bond_name(bond: Chem.Bond) -> str:
    return f"({bond.GetBondType().name}-{bond.GetStereo().name}-{bond.GetBondDir().name})"


def context_key(atom: Chem.Atom) -> str:
    """GROVER's contextual property of an atom: ``symbol`` then ``_{neighbour}-{bond type}{count}`` for each
    (neighbour symbol, bond type) pair in sorted order, e.g. ``O_C-DOUBLE1`` for a carbonyl oxygen."""
    counts: Counter[str] = Counter(f"{bond.GetOtherAtom(atom).GetSymbol()}-{bond.GetBondType().name}"
                                   for bond in atom.GetBonds())
    return atom.GetSymbol() + "".join(f"_{k}{counts[k]}" for k in sorted(counts))


def bond_context_key(bond: Chem.Bond) -> str:
    """GROVER's contextual property of a bond: its ``(type-stereo-direction)`` then, over every other bond of its two
    end atoms, ``_{end-atom symbol}-{(that bond's type-stereo-direction)}{count}`` in sorted order."""
    counts: Counter[str] = Counter()
    for end in (bond.GetBeginAtom(), bond.GetEndAtom()):
        for other_bond in end.GetBonds():
            if other_bond.GetIdx() != bond.GetIdx():
                counts[f"{end.GetSymbol()}-{_bond_name(other_bond)}"] += 1
    return _bond_name(bond) + "".join(f"_{k}{counts[k]}" for k in sorted(counts))


def context_keys(mol: Chem.Mol) -> tuple[list[str], list[str]]:
    """``(atom keys per atom, bond keys per RDKit bond)``; edges ``2b`` and ``2b + 1`` share bond ``b``'s key.

    Same strings as :func:`context_key` / :func:`bond_context_key`, computed once per molecule."""
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    bonds = list(mol.GetBonds())
    ends = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in bonds]
    types = [b.GetBondType().name for b in bonds]
    names = [f"({t}-{b.GetStereo().name}-{b.GetBondDir().name})" for t, b in zip(types, bonds)]
    incident: list[list[int]] = [[] for _ in symbols]
    for k, (u, v) in enumerate(ends):
        incident[u].append(k)
        incident[v].append(k)
    atom_keys = []
    for i, sym in enumerate(symbols):
        c = Counter(f"{symbols[ends[k][0] if ends[k][1] == i else ends[k][1]]}-{types[k]}" for k in incident[i])
        atom_keys.append(sym + "".join(f"_{key}{c[key]}" for key in sorted(c)))
    bond_keys = []
    for k, (u, v) in enumerate(ends):
        c = Counter(f"{symbols[e]}-{names[j]}" for e in (u, v) for j in incident[e] if j != k)
        bond_keys.append(names[k] + "".join(f"_{key}{c[key]}" for key in sorted(c)))
    return atom_keys, bond_keys


# ------------------------------------------------------------------------------------------------ vocabulary

UNK = "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    """Atom and bond contextual-property keys -> class indices; index 0 is ``<unk>`` (unseen or rare keys).

    Keys are ordered by decreasing corpus count, then alphabetically, so the same corpus always gives the same
    indices. ``max_atom``/``max_bond`` cap the number of classes (``<unk>`` included) so that a prediction head of
    fixed width fits any corpus.

    >>> vocab = Vocabulary.build(["CCO", "CC"])
    >>> vocab.atom_keys[:3], vocab.atom_index("C_C-SINGLE1")
    (('<unk>', 'C_C-SINGLE1', 'C_C-SINGLE1_O-SINGLE1'), 1)
    """

    atom_keys: tuple[str, ...] = (UNK,)
    bond_keys: tuple[str, ...] = (UNK,)
    min_count: int = 1

    def __post_init__(self) -> None:
        if not self.atom_keys or self.atom_keys[0] != UNK or not self.bond_keys or self.bond_keys[0] != UNK:
            raise ValueError("Vocabulary: index 0 of atom_keys and bond_keys must be '<unk>'")
        object.__setattr__(self, "_atom", {k: i for i, k in enumerate(self.atom_keys)})
        object.__setattr__(self, "_bond", {k: i for i, k in enumerate(self.bond_keys)})

    @staticmethod
    def ranked(counts: Counter, min_count: int = 1, max_size: int | None = None) -> tuple[str, ...]:
        """``<unk>`` then the keys seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        keys = sorted((k for k, c in counts.items() if c >= max(1, min_count)), key=lambda k: (-counts[k], k))
        if max_size is not None:
            keys = keys[: max(0, max_size - 1)]
        return (UNK, *keys)

    @classmethod
    def from_counts(cls, atom_counts: Counter, bond_counts: Counter, min_count: int = 1,
                    max_atom: int | None = None, max_bond: int | None = None) -> "Vocabulary":
        return cls(cls.ranked(atom_counts, min_count, max_atom), cls.ranked(bond_counts, min_count, max_bond),
                   min_count)

    @classmethod
    def build(cls, molecules: Iterable[Molecule], min_count: int = 1, max_atom: int | None = None,
              max_bond: int | None = None) -> "Vocabulary":
        """Count the keys of a corpus (SMILES or RDKit molecules)."""
        atoms: Counter[str] = Counter()
        bonds: Counter[str] = Counter()
        for m in molecules:
            a, b = context_keys(to_mol(m))
            atoms.update(a)
            bonds.update(b)
        return cls.from_counts(atoms, bonds, min_count, max_atom, max_bond)

    @property
    def n_atom(self) -> int:
        return len(self.atom_keys)

    @property
    def n_bond(self) -> int:
        return len(self.bond_keys)

    def atom_index(self, key: str) -> int:
        return self._atom.get(key, 0)

    def bond_index(self, key: str) -> int:
        return self._bond.get(key, 0)

    @staticmethod
    def motif_names() -> tuple[str, ...]:
        return motif_names()

    def to_json(self) -> str:
        return json.dumps({"format": "grover-vocabulary", "featurizer": FEATURIZER_VERSION,
                           "min_count": self.min_count, "atom_keys": list(self.atom_keys),
                           "bond_keys": list(self.bond_keys), "motif_names": list(motif_names())})

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        try:
            d = json.loads(text)
            vocab = cls(tuple(d["atom_keys"]), tuple(d["bond_keys"]), int(d.get("min_count", 1)))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"vocabulary JSON: {type(e).__name__}: {e}") from None
        if d.get("motif_names") and tuple(d["motif_names"]) != motif_names():
            raise ValueError("vocabulary JSON: its motif names differ from this RDKit's fr_* descriptors")
        return vocab


# ------------------------------------------------------------------------------------------------ featurize

def featurize(mol_or_smiles: Molecule, vocab: Vocabulary | None = None) -> Data:
    """The GROVER graph of one molecule with its pretext labels.

    Args:
        mol_or_smiles: an RDKit molecule or a SMILES string (``ValueError`` if RDKit cannot parse it).
        vocab: maps context keys to indices; without one every key is ``<unk>`` (index 0).

    Returns:
        ``Data`` with ``x`` float32[n, 151], ``edge_index`` int64[2, 2m], ``edge_attr`` float32[2m, 14],
        ``atom_key`` int64[n], ``bond_key`` int64[2m] (both directions of a bond share its key),
        ``motif`` float32[1, 85] and ``smiles`` (canonical, isomeric).
    """
    mol = to_mol(mol_or_smiles)
    x, edge_index, edge_attr = graph_arrays(mol)
    vocab = vocab or Vocabulary()
    atom_keys, bond_keys = context_keys(mol)
    atom_key = np.array([vocab.atom_index(k) for k in atom_keys], dtype=np.int64)
    bond_key = np.repeat(np.array([vocab.bond_index(k) for k in bond_keys], dtype=np.int64), 2)
    return Data(
        x=torch.from_numpy(x), edge_index=torch.from_numpy(edge_index), edge_attr=torch.from_numpy(edge_attr),
        atom_key=torch.from_numpy(atom_key), bond_key=torch.from_numpy(bond_key),
        motif=torch.from_numpy(motif_labels(mol)).unsqueeze(0), smiles=Chem.MolToSmiles(mol),
    )


__all__ = ["ATOM_DIM", "ATOM_LAYOUT", "BOND_DIM", "FEATURIZER_VERSION", "MOTIF_DIM", "Vocabulary", "atom_features",
           "bond_context_key", "bond_features", "context_key", "context_keys", "featurize", "graph_arrays",
           "motif_labels", "motif_names", "to_mol"]
