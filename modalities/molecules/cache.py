"""The on-disk feature cache of molecule files.

Featurisation is the costly part (RDKit perceives rings, aromaticity, 4 pharmacophore SMARTS and 85 fragment
patterns per molecule), so each input file is featurised once into a cache folder named by the SHA-256 of the file's
bytes, :data:`~modalities.molecules.featurize.FEATURIZER_VERSION` and the reading options. The folder holds plain
``.npy`` arrays (numbers and fixed-width strings, read with ``allow_pickle=False`` and memory-mapped, so nothing is
unpickled and a corpus is not loaded whole) and a JSON list of the skipped records. Atom and bond features are
binary except the atom mass, so they are stored bit-packed (19 + 4 bytes per atom, 2 + 8 bytes per bond) and
unpacked per item: about 1.5 kB per drug-like molecule instead of 20 kB of float32. A file is cached in parts of
``PART_SIZE`` molecules. Descriptors are a second, optional array in each part's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rdkit import Chem, RDLogger

from modalities.base import DataError, cache_root, file_digest
from modalities.molecules import featurize as feat
from modalities.molecules import readers
from modalities.molecules.descriptors import descriptor_names, rdkit_descriptors

__all__ = ["ARRAYS", "CACHE_FORMAT", "FileCache", "MASS_COLUMN", "MoleculeShard", "PART_SIZE", "default_cache_dir",
           "featurize_table", "load_file_cache"]

CACHE_FORMAT = 4  # part of the cache key with FEATURIZER_VERSION
PART_SIZE = 100_000  # molecules per cache part
MASS_COLUMN = feat.ATOM_LAYOUT["mass"].start
ARRAYS = ("smiles_utf8", "smiles_ptr", "scaffold_utf8", "scaffold_ptr", "atom_ptr", "bond_ptr", "atom_bits",
          "atom_mass", "bond_ends", "bond_bits", "atom_key", "bond_key", "atom_key_names", "bond_key_names", "motif",
          "properties", "property_names")


def default_cache_dir() -> Path:
    """``cache_root()/molecules``: ``$MODALITIES_CACHE/molecules`` or ``~/.cache/modalities/molecules``."""
    return cache_root() / "molecules"


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
