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
0..5: none, any, Z, E, cis, trans; other). Bond ``b`` of RDKit's order gives edges ``2b`` (begin -> end) and
``2b + 1`` (end -> begin); ``edge_index[0]`` is the source atom, ``edge_index[1]`` the target.

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
FEATURIZER_VERSION = "grover-1"  # part of every cache key: bump it whenever a feature or key changes

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


def _slot(value: int, choices: tuple) -> int:
    """Index of ``value`` in ``choices``, or the trailing "other" slot."""
    for i, c in enumerate(choices):
        if value == c:
            return i
    return len(choices)


def atom_features(mol: Chem.Mol) -> np.ndarray:
    """float32[n_atoms, 151] GROVER atom features (layout in the module docstring and ``ATOM_LAYOUT``)."""
    n = mol.GetNumAtoms()
    x = np.zeros((n, ATOM_DIM), dtype=np.float32)
    flags = []
    for pattern in _patterns():
        hit = np.zeros(n, dtype=bool)
        for match in mol.GetSubstructMatches(pattern):
            hit[list(match)] = True
        flags.append(hit)
    ring = mol.GetRingInfo()
    L = ATOM_LAYOUT
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        z = atom.GetAtomicNum()
        x[i, L["atomic_num"].start + (z - 1 if 1 <= z <= MAX_ATOMIC_NUM else MAX_ATOMIC_NUM)] = 1
        x[i, L["degree"].start + _slot(atom.GetTotalDegree(), DEGREES)] = 1
        x[i, L["formal_charge"].start + _slot(atom.GetFormalCharge(), FORMAL_CHARGES)] = 1
        x[i, L["chiral_tag"].start + _slot(int(atom.GetChiralTag()), CHIRAL_TAGS)] = 1
        x[i, L["num_hs"].start + _slot(atom.GetTotalNumHs(), NUM_HS)] = 1
        x[i, L["hybridisation"].start + _slot(atom.GetHybridization(), HYBRIDISATIONS)] = 1
        x[i, L["aromatic"].start] = float(atom.GetIsAromatic())
        x[i, L["mass"].start] = atom.GetMass() * 0.01
        x[i, L["implicit_valence"].start + _slot(atom.GetValence(Chem.ValenceType.IMPLICIT), IMPLICIT_VALENCES)] = 1
        for k, name in enumerate(("acceptor", "donor", "acidic", "basic")):
            x[i, L[name].start] = float(flags[k][i])
        for k, size in enumerate(RING_SIZES):
            x[i, L["ring_size"].start + k] = float(ring.IsAtomInRingOfSize(i, size))
    return x


def bond_features(bond: Chem.Bond) -> np.ndarray:
    """float32[14]: [no-bond (0), single, double, triple, aromatic, conjugated, in ring, stereo 0..5, other]."""
    f = np.zeros(BOND_DIM, dtype=np.float32)
    bond_type = bond.GetBondType()
    for k, t in enumerate(BOND_TYPES):
        f[1 + k] = float(bond_type == t)
    f[5] = float(bond.GetIsConjugated())
    f[6] = float(bond.IsInRing())
    f[7 + _slot(int(bond.GetStereo()), BOND_STEREOS)] = 1
    return f


def graph_arrays(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x float32[n, 151], edge_index int64[2, 2m], edge_attr float32[2m, 14])``; edges 2b/2b+1 are bond b."""
    x = atom_features(mol)
    m = mol.GetNumBonds()
    edge_index = np.zeros((2, 2 * m), dtype=np.int64)
    edge_attr = np.zeros((2 * m, BOND_DIM), dtype=np.float32)
    for bond in mol.GetBonds():
        b, u, v = bond.GetIdx(), bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edge_index[:, 2 * b] = (u, v)
        edge_index[:, 2 * b + 1] = (v, u)
        edge_attr[2 * b] = edge_attr[2 * b + 1] = bond_features(bond)
    return x, edge_index, edge_attr


def motif_labels(mol: Chem.Mol) -> np.ndarray:
    """float32[85]: 1 where RDKit's ``fr_*`` count (sorted names) is non-zero."""
    return np.array([fn(mol) > 0 for _, fn in _motif_functions()], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ context keys

def _bond_name(bond: Chem.Bond) -> str:
    return f"({bond.GetBondType()}-{bond.GetStereo()}-{bond.GetBondDir()})"


def context_key(atom: Chem.Atom) -> str:
    """GROVER's contextual property of an atom: ``symbol`` then ``_{neighbour}-{bond type}{count}`` for each
    (neighbour symbol, bond type) pair in sorted order, e.g. ``O_C-DOUBLE1`` for a carbonyl oxygen."""
    counts: Counter[str] = Counter()
    for bond in atom.GetBonds():
        other = bond.GetOtherAtom(atom)
        counts[f"{other.GetSymbol()}-{bond.GetBondType()}"] += 1
    return atom.GetSymbol() + "".join(f"_{k}{counts[k]}" for k in sorted(counts))


def bond_context_key(bond: Chem.Bond) -> str:
    """GROVER's contextual property of a bond: its ``(type-stereo-direction)`` then, over every other bond of its two
    end atoms, ``_{end-atom symbol}-{(that bond's type-stereo-direction)}{count}`` in sorted order."""
    counts: Counter[str] = Counter()
    ends = (bond.GetBeginAtom(), bond.GetEndAtom())
    end_ids = {a.GetIdx() for a in ends}
    for end in ends:
        for other_bond in end.GetBonds():
            if other_bond.GetOtherAtomIdx(end.GetIdx()) in end_ids:
                continue
            counts[f"{end.GetSymbol()}-{_bond_name(other_bond)}"] += 1
    return _bond_name(bond) + "".join(f"_{k}{counts[k]}" for k in sorted(counts))


def context_keys(mol: Chem.Mol) -> tuple[list[str], list[str]]:
    """``(atom keys per atom, bond keys per RDKit bond)``; edges ``2b`` and ``2b + 1`` share bond ``b``'s key."""
    return [context_key(a) for a in mol.GetAtoms()], [bond_context_key(b) for b in mol.GetBonds()]


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
