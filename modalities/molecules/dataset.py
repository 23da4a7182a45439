"""A dataset of GROVER-featurised molecules with an on-disk feature cache, scaffold / random splits and RDKit 2-D
descriptors for fine-tuning.

Featurisation is the costly part (RDKit perceives rings, aromaticity, 4 pharmacophore SMARTS and 85 fragment
patterns per molecule), so each input file is featurised once into a cache folder named by the SHA-256 of the file's
bytes, :data:`~modalities.molecules.featurize.FEATURIZER_VERSION` and the reading options. The folder holds plain
``.npy`` arrays (numbers and fixed-width strings, read with ``allow_pickle=False`` and memory-mapped, so nothing is
unpickled and a corpus is not loaded whole) and a JSON list of the skipped records. Atom and bond features are
binary except the atom mass, so they are stored bit-packed (19 + 4 bytes per atom, 2 + 8 bytes per bond) and
unpacked per item: about 1.5 kB per drug-like molecule instead of 20 kB of float32. A file is cached in parts of
``PART_SIZE`` molecules. Descriptors are a second, optional array in each part's folder.

Splits follow chemprop / GROVER:

- :func:`scaffold_split` ("balanced scaffold"): molecules are grouped by Bemis-Murcko scaffold; groups larger than
  half the validation or test size go first (in seeded random order), then the other groups (seeded random order);
  each group goes whole into train if it fits, else validation if it fits, else test. No scaffold crosses splits.
- :func:`random_split`: a seeded permutation.

Both give ``floor(0.8 n)`` / ``floor(0.1 n)`` / the rest for the default fractions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from rdkit import Chem, RDLogger
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from modalities.base import DataError, file_digest
from modalities.molecules import featurize as feat
from modalities.molecules import readers

SPLITS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
CACHE_FORMAT = 4  # part of the cache key with FEATURIZER_VERSION
PART_SIZE = 100_000  # molecules per cache part
MASS_COLUMN = feat.ATOM_LAYOUT["mass"].start
ARRAYS = ("smiles_utf8", "smiles_ptr", "scaffold_utf8", "scaffold_ptr", "atom_ptr", "bond_ptr", "atom_bits",
          "atom_mass", "bond_ends", "bond_bits", "atom_key", "bond_key", "atom_key_names", "bond_key_names", "motif",
          "properties", "property_names")


def default_cache_dir() -> Path:
    """``$MODALITIES_CACHE/molecules`` or ``~/.cache/modalities/molecules``."""
    return Path(os.environ.get("MODALITIES_CACHE", Path.home() / ".cache" / "modalities")) / "molecules"


# ------------------------------------------------------------------------------------------------ splits

def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES (without chirality); ``""`` for acyclic molecules."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return ""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-6:
        raise DataError(f"data.split_fractions: three non-negative fractions summing to 1, got {list(fractions)}")
    train, val = int(math.floor(f[0] * n)), int(math.floor(f[1] * n))
    return train, val, n - train - val


def scaffold_split(scaffolds: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced scaffold split (chemprop ``scaffold_split(balanced=True)``, as used by GROVER).

    Returns sorted int64 index arrays ``(train, val, test)``; every scaffold lies in exactly one of them.
    """
    n = len(scaffolds)
    train_size, val_size, test_size = _sizes(n, fractions)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(scaffolds):
        groups[s].append(i)
    sets = [groups[k] for k in sorted(groups)]  # sorted: the seed alone decides the order
    big = [s for s in sets if len(s) > val_size / 2 or len(s) > test_size / 2]
    small = [s for s in sets if not (len(s) > val_size / 2 or len(s) > test_size / 2)]
    rng = random.Random(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for s in big + small:
        if len(train) + len(s) <= train_size:
            train += s
        elif len(val) + len(s) <= val_size:
            val += s
        else:
            test += s
    return tuple(np.array(sorted(x), dtype=np.int64) for x in (train, val, test))  # type: ignore[return-value]


def random_split(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random split into sorted int64 index arrays ``(train, val, test)``."""
    train_size, val_size, _ = _sizes(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    parts = perm[:train_size], perm[train_size:train_size + val_size], perm[train_size + val_size:]
    return tuple(np.sort(p).astype(np.int64) for p in parts)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ descriptors

def descriptor_names() -> tuple[str, ...]:
    """All RDKit 2-D descriptors (``rdkit.Chem.Descriptors._descList``), in RDKit's order."""
    from rdkit.Chem import Descriptors

    return tuple(name for name, _ in Descriptors._descList)


def rdkit_descriptors(smiles: str) -> np.ndarray:
    """float64[n_descriptors]: every RDKit 2-D descriptor; NaN where RDKit fails or returns a non-finite value."""
    from rdkit.Chem import Descriptors

    mol = Chem.MolFromSmiles(smiles)
    out = np.full(len(Descriptors._descList), np.nan)
    if mol is None:
        return out
    for k, (_, fn) in enumerate(Descriptors._descList):
        try:
            out[k] = float(fn(mol))
        except Exception:  # RDKit raises assorted errors on odd valences; a missing value is NaN
            pass
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass(frozen=True)
class DescriptorScaler:
    """Z-scores descriptors with training-split statistics; NaN (missing) becomes 0 (the training mean), and values
    are clipped to ``[-clip, clip]`` because several descriptors (Ipc, BertzCT) are heavy-tailed."""

    mean: np.ndarray
    std: np.ndarray
    clip: float = 6.0

    @classmethod
    def fit(cls, values: np.ndarray) -> "DescriptorScaler":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(mean, std)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        z = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        z = np.where(np.isfinite(z), z, 0.0)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)


# ------------------------------------------------------------------------------------------------ cache

def _cache_folder(path: Path, cache_dir: Path, strip_salts: bool, smiles_column: str | None) -> Path:
    key = json.dumps([file_digest(path), feat.FEATURIZER_VERSION, CACHE_FORMAT, bool(strip_salts), smiles_column])
    return cache_dir / f"{path.stem[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def featurize_table(table: readers.MoleculeTable) -> dict[str, np.ndarray]:
    """The cache arrays of a table: concatenated graphs with per-molecule offsets, key ids, motifs, scaffolds."""
    bits, masses, eis, eas, aks, bks, motifs, scaffolds = [], [], [], [], [], [], [], []
    atom_ptr, bond_ptr = [0], [0]
    atom_names: dict[str, int] = {}
    bond_names: dict[str, int] = {}
    from rdkit.Chem.Scaffolds import MurckoScaffold

    for smiles in table.smiles:
        mol = Chem.MolFromSmiles(smiles)
        x, edge_index, edge_attr = feat.graph_arrays(mol)
        a_keys, b_keys = feat.context_keys(mol)
        bits.append(np.packbits(x != 0, axis=1))
        masses.append(x[:, MASS_COLUMN])
        eis.append(edge_index[:, 0::2].T.astype(np.int32))  # bond b = edge 2b (lower atom -> higher)
        eas.append(edge_attr[0::2])
        aks.append(np.array([atom_names.setdefault(k, len(atom_names)) for k in a_keys], dtype=np.int32))
        bks.append(np.array([bond_names.setdefault(k, len(bond_names)) for k in b_keys], dtype=np.int32))
        motifs.append(feat.motif_labels(mol).astype(np.uint8))
        scaffolds.append(MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False))
        atom_ptr.append(atom_ptr[-1] + x.shape[0])
        bond_ptr.append(bond_ptr[-1] + edge_index.shape[1] // 2)
    n = len(table.smiles)
    names = sorted(table.properties)
    props = np.stack([table.properties[k] for k in names], axis=1) if names else np.zeros((n, 0))

    def cat(parts: list[np.ndarray], empty: tuple[int, ...], dtype: Any, axis: int = 0) -> np.ndarray:
        return np.concatenate(parts, axis=axis) if parts else np.zeros(empty, dtype=dtype)

    return {
        **_pack_strings("smiles", table.smiles), **_pack_strings("scaffold", scaffolds),
        "atom_ptr": np.array(atom_ptr, dtype=np.int64), "bond_ptr": np.array(bond_ptr, dtype=np.int64),
        "atom_bits": cat(bits, (0, (feat.ATOM_DIM + 7) // 8), np.uint8), "atom_mass": cat(masses, (0,), np.float32),
        "bond_ends": cat(eis, (0, 2), np.int32),
        "bond_bits": np.packbits(cat(eas, (0, feat.BOND_DIM), np.float32) != 0, axis=1),
        "atom_key": cat(aks, (0,), np.int32), "bond_key": cat(bks, (0,), np.int32),
        "atom_key_names": np.array(list(atom_names) or [""], dtype=str),
        "bond_key_names": np.array(list(bond_names) or [""], dtype=str),
        "motif": np.stack(motifs) if motifs else np.zeros((0, feat.MOTIF_DIM), dtype=np.uint8),
        "properties": props.astype(np.float64), "property_names": np.array(names or [""], dtype=str)[: len(names)],
    }


def _pack_strings(name: str, values: Sequence[str]) -> dict[str, np.ndarray]:
    """Variable-length strings as one UTF-8 byte array plus offsets (fixed-width numpy strings waste ~10x)."""
    encoded = [v.encode() for v in values]
    ptr = np.zeros(len(encoded) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(e) for e in encoded])
    return {f"{name}_utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), f"{name}_ptr": ptr}


def _write_folder(folder: Path, files: dict[str, np.ndarray], extra: dict[str, str]) -> None:
    """Write every array (and text file) into a temporary sibling, then rename it into place atomically."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, arr in files.items():
        np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
    for name, text in extra.items():
        (tmp / name).write_text(text)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process won the race: its folder is equivalent
        shutil.rmtree(tmp, ignore_errors=True)


class MoleculeShard:
    """Featurised molecules (one part of an input file), memory-mapped from the cache."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.a: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            try:
                self.a[name] = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DataError(f"{folder}: damaged feature cache ({name}.npy: {e}); delete the folder") from None
        self.property_names = [str(s) for s in self.a["property_names"]]

    def __len__(self) -> int:
        return len(self.a["smiles_ptr"]) - 1

    def string(self, name: str, j: int) -> str:
        """String ``j`` of a packed column (``smiles`` or ``scaffold``)."""
        ptr = self.a[f"{name}_ptr"]
        return bytes(self.a[f"{name}_utf8"][int(ptr[j]):int(ptr[j + 1])]).decode()

    def descriptors(self) -> np.ndarray:
        """float64[n, n_descriptors], computed once and cached next to the features."""
        path = self.folder / "descriptors.npy"
        if not path.is_file():
            RDLogger.DisableLog("rdApp.*")
            try:
                rows = [rdkit_descriptors(self.string("smiles", j)) for j in range(len(self))]
                values = np.stack(rows) if rows else np.zeros((0, len(descriptor_names())))
            finally:
                RDLogger.EnableLog("rdApp.*")
            tmp = self.folder / f".descriptors.{os.getpid()}.npy"
            np.save(tmp, values, allow_pickle=False)
            os.replace(tmp, path)
        return np.load(path, allow_pickle=False)


@dataclass
class FileCache:
    """The cached features of one input file: its parts, and what its reader skipped."""

    shards: list[MoleculeShard]
    skipped: list[tuple[str, int, str]]
    records: int


def _slice(table: readers.MoleculeTable, lo: int, hi: int) -> readers.MoleculeTable:
    return readers.MoleculeTable(smiles=table.smiles[lo:hi], names=table.names[lo:hi],
                                 properties={k: v[lo:hi] for k, v in table.properties.items()})


def load_file_cache(path: Path, cache_dir: Path, strip_salts: bool = True, smiles_column: str | None = None,
                    part_size: int | None = None) -> FileCache:
    """The cached features of ``path``, featurising it first on a cache miss, ``part_size`` molecules per part
    (so that a large file never holds more than one part's arrays in memory). ``meta.json`` is written last:
    its presence marks a complete cache."""
    root = _cache_folder(path, cache_dir, strip_salts, smiles_column)
    part_size = int(part_size or PART_SIZE)
    meta = root / "meta.json"
    if not meta.is_file():
        table = readers.read_file(path, strip_salts, smiles_column)
        parts = max(1, math.ceil(len(table) / part_size))
        for k in range(parts):
            folder = root / f"part-{k:05d}"
            if not (folder / "atom_ptr.npy").is_file():
                _write_folder(folder, featurize_table(_slice(table, k * part_size, (k + 1) * part_size)), {})
        (root / "skipped.json").write_text(json.dumps(table.skipped))
        tmp = root / f".meta.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"source": str(path), "records": table.records, "molecules": len(table),
                                   "parts": parts, "featurizer": feat.FEATURIZER_VERSION}))
        os.replace(tmp, meta)
    try:
        info = json.loads(meta.read_text())
        skipped = [tuple(s) for s in json.loads((root / "skipped.json").read_text())]
        shards = [MoleculeShard(root / f"part-{k:05d}") for k in range(int(info["parts"]))]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{root}: damaged feature cache ({type(e).__name__}: {e}); delete the folder") from None
    return FileCache(shards, skipped, int(info["records"]))


# ------------------------------------------------------------------------------------------------ dataset

class MoleculeDataset(Dataset):
    """Featurised molecules of a file or folder, one split of them.

    Args:
        path: a molecule file (``.smi``/``.txt``, ``.csv``/``.tsv``, ``.sdf``) or a folder of them.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        split_kind: ``"scaffold"`` (balanced Bemis-Murcko) or ``"random"``.
        fractions: train / val / test fractions.
        seed: seed of the split.
        targets: property names that become ``y`` float32[1, T] (NaN where missing); a name no file provides is a
            :class:`DataError`.
        descriptors: add ``descriptors`` float32[1, 217]: RDKit 2-D descriptors z-scored with training statistics.
        vocab: context-key vocabulary (e.g. the one saved with a pretrained encoder); by default it is built on the
            training split with ``min_count`` / ``max_atom_keys`` / ``max_bond_keys``.
        strip_salts: keep only each molecule's largest fragment.
        smiles_column: the CSV column holding SMILES (default: found by name).
        cache_dir: where features are cached (default :func:`default_cache_dir`).

    Items are ``Data`` graphs (:func:`~modalities.molecules.featurize.featurize` fields, plus ``y`` and
    ``descriptors`` on request); ``dataset[(index, seed)]`` is accepted as the training loop asks.
    """

    def __init__(self, path: str | Path, split: str = "train", *, split_kind: str = "scaffold",
                 fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0, targets: Sequence[str] = (),
                 descriptors: bool = False, vocab: feat.Vocabulary | None = None, min_count: int = 1,
                 max_atom_keys: int | None = None, max_bond_keys: int | None = None, strip_salts: bool = True,
                 smiles_column: str | None = None, cache_dir: str | Path | None = None, warn: bool = True) -> None:
        if split not in SPLITS:
            raise DataError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        if split_kind not in ("scaffold", "random"):
            raise DataError(f"data.split: {split_kind!r} is not 'scaffold' or 'random'")
        self.path = Path(path)
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        caches = [load_file_cache(f, cache, strip_salts, smiles_column) for f in readers.molecule_files(self.path)]
        self.shards = [sh for c in caches for sh in c.shards]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        n = int(self.offsets[-1])
        skipped = [s for c in caches for s in c.skipped]
        self.report = readers.MoleculeTable(skipped=skipped, records=sum(c.records for c in caches),
                                            smiles=[""] * n).report()
        if warn and skipped:
            warnings.warn(f"{self.path}: {self.report}", stacklevel=2)
        if n == 0:
            raise DataError(f"{self.path}: no valid molecule in {len(caches)} file(s)")

        if split_kind == "scaffold":
            scaffolds = [sh.string("scaffold", j) for sh in self.shards for j in range(len(sh))]
            parts = scaffold_split(scaffolds, fractions, seed)
        else:
            parts = random_split(n, fractions, seed)
        self.split_indices = dict(zip(("train", "val", "test"), parts))
        self.indices = np.arange(n, dtype=np.int64) if split == "all" else self.split_indices[split]
        self.split = split

        self.vocab = vocab or self._build_vocab(self.split_indices["train"], min_count, max_atom_keys, max_bond_keys)
        self._atom_lut = [np.array([self.vocab.atom_index(str(k)) for k in sh.a["atom_key_names"]], dtype=np.int64)
                          for sh in self.shards]
        self._bond_lut = [np.array([self.vocab.bond_index(str(k)) for k in sh.a["bond_key_names"]], dtype=np.int64)
                          for sh in self.shards]

        self.target_names = tuple(targets)
        self._targets = self._target_matrix(self.target_names) if self.target_names else None
        self.scaler: DescriptorScaler | None = None
        self._descriptors = None
        if descriptors:
            raw = np.concatenate([sh.descriptors() for sh in self.shards])
            self.scaler = DescriptorScaler.fit(raw[self.split_indices["train"]])
            self._descriptors = self.scaler(raw)

    def _locate(self, i: int) -> tuple[MoleculeShard, int, int]:
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.shards[s], s, int(i - self.offsets[s])

    def _build_vocab(self, train: np.ndarray, min_count: int, max_atom: int | None,
                     max_bond: int | None) -> feat.Vocabulary:
        atoms: Counter[str] = Counter()
        bonds: Counter[str] = Counter()
        for s, sh in enumerate(self.shards):
            local = train[(train >= self.offsets[s]) & (train < self.offsets[s + 1])] - self.offsets[s]
            chosen = np.zeros(len(sh), dtype=bool)
            chosen[local] = True
            for key, ptr, names, counter, per in (("atom_key", "atom_ptr", "atom_key_names", atoms, 1),
                                                   ("bond_key", "bond_ptr", "bond_key_names", bonds, 1)):
                sizes = np.diff(np.asarray(sh.a[ptr])) // per
                ids = np.asarray(sh.a[key])[np.repeat(chosen, sizes)]
                counts = np.bincount(ids, minlength=len(sh.a[names]))
                for name, c in zip(sh.a[names], counts):
                    if c:
                        counter[str(name)] += int(c)
        return feat.Vocabulary.from_counts(atoms, bonds, min_count, max_atom, max_bond)

    def _target_matrix(self, names: Sequence[str]) -> np.ndarray:
        cols = []
        for name in names:
            parts = []
            for sh in self.shards:
                match = next((k for k in sh.property_names if k.lower() == name.lower()), None)
                parts.append(np.asarray(sh.a["properties"][:, sh.property_names.index(match)]) if match
                             else np.full(len(sh), np.nan))
            col = np.concatenate(parts)
            if np.all(np.isnan(col)):
                have = sorted({k for sh in self.shards for k in sh.property_names}) or ["none"]
                raise DataError(f"{self.path}: no usable numeric property {name!r} for data.targets "
                                f"(numeric properties found: {', '.join(have)})")
            cols.append(col)
        return np.stack(cols, axis=1).astype(np.float32)

    @property
    def property_names(self) -> list[str]:
        return sorted({k for sh in self.shards for k in sh.property_names})

    def smiles(self, item: int) -> str:
        sh, _, j = self._locate(int(self.indices[item]))
        return sh.string("smiles", j)

    def targets(self) -> np.ndarray:
        """float32[len(self), T] targets of this split (NaN where missing)."""
        if self._targets is None:
            raise DataError(f"{self.path}: no data.targets were named")
        return self._targets[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> Data:
        item = key[0] if isinstance(key, tuple) else key
        g = int(self.indices[item])
        sh, s, j = self._locate(g)
        a = sh.a
        a0, a1 = int(a["atom_ptr"][j]), int(a["atom_ptr"][j + 1])
        b0, b1 = int(a["bond_ptr"][j]), int(a["bond_ptr"][j + 1])
        bond_ids = self._bond_lut[s][np.asarray(a["bond_key"][b0:b1])]
        x = np.unpackbits(np.asarray(a["atom_bits"][a0:a1]), axis=1, count=feat.ATOM_DIM).astype(np.float32)
        x[:, MASS_COLUMN] = a["atom_mass"][a0:a1]
        ends = np.asarray(a["bond_ends"][b0:b1], dtype=np.int64)
        bond_attr = np.unpackbits(np.asarray(a["bond_bits"][b0:b1]), axis=1, count=feat.BOND_DIM).astype(np.float32)
        data = Data(
            x=torch.from_numpy(x),
            edge_index=torch.from_numpy(np.stack([ends, ends[:, ::-1]], axis=1).reshape(-1, 2).T.copy()),
            edge_attr=torch.from_numpy(np.repeat(bond_attr, 2, axis=0)),
            atom_key=torch.from_numpy(self._atom_lut[s][np.asarray(a["atom_key"][a0:a1])]),
            bond_key=torch.from_numpy(np.repeat(bond_ids, 2)),
            motif=torch.from_numpy(np.array(a["motif"][j], dtype=np.float32)).unsqueeze(0),
            smiles=sh.string("smiles", j),
        )
        if self._targets is not None:
            data.y = torch.from_numpy(self._targets[g]).unsqueeze(0)
        if self._descriptors is not None:
            data.descriptors = torch.from_numpy(self._descriptors[g]).unsqueeze(0)
        return data


def collate(samples: Sequence[Data | Mapping[str, Any]]) -> Batch:
    """A ``torch_geometric.data.Batch`` of graphs (dicts such as the loop's keyed samples are turned back into
    ``Data``); per-graph ints (``seed``) become int64[B], strings (``smiles``) a list, ``motif``/``y`` [B, ...]."""
    graphs = [s if isinstance(s, Data) else Data(**dict(s)) for s in samples]
    return Batch.from_data_list(graphs)


__all__ = ["DescriptorScaler", "FileCache", "MoleculeDataset", "MoleculeShard", "collate", "default_cache_dir",
           "descriptor_names", "featurize_table", "load_file_cache", "murcko_scaffold", "random_split",
           "rdkit_descriptors", "scaffold_split"]
