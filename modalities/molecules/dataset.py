"""A dataset of GROVER-featurised molecules: one split of the molecules of a file or folder, read from the feature
cache (:mod:`~modalities.molecules.cache`), split by scaffold or at random (:mod:`~modalities.molecules.splits`), with
targets and z-scored RDKit descriptors (:mod:`~modalities.molecules.descriptors`) for fine-tuning, and the batching of
its graphs (:func:`collate`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from modalities.base import DataError
from modalities.molecules import featurize as feat
from modalities.molecules import readers
from modalities.molecules.cache import MASS_COLUMN, PART_SIZE, MoleculeShard, default_cache_dir, load_file_cache
from modalities.molecules.descriptors import DescriptorScaler, descriptor_names
from modalities.molecules.splits import DEFAULT_FRACTIONS, random_split, scaffold_split

SPLITS = ("train", "val", "test", "all")


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
        # this module's PART_SIZE, so that a test can lower it for the dataset alone
        caches = [load_file_cache(f, cache, strip_salts, smiles_column, PART_SIZE)
                  for f in readers.molecule_files(self.path)]
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


__all__ = ["MoleculeDataset", "SPLITS", "collate",
           # re-exported: the dataset's parts, importable from here as before the split
           "DescriptorScaler", "descriptor_names", "random_split", "scaffold_split"]
