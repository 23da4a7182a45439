"""Train / validation / test splits of a molecule corpus, as chemprop and GROVER make them.

- :func:`scaffold_split` ("balanced scaffold"): molecules are grouped by Bemis-Murcko scaffold; groups larger than
  half the validation or test size go first (in seeded random order), then the other groups (seeded random order);
  each group goes whole into train if it fits, else validation if it fits, else test. No scaffold crosses splits.
- :func:`random_split`: a seeded permutation.

Both give ``floor(0.8 n)`` / ``floor(0.1 n)`` / the rest for the default fractions.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Sequence

import numpy as np
from rdkit import Chem

from modalities.base import DataError

__all__ = ["DEFAULT_FRACTIONS", "murcko_scaffold", "random_split", "scaffold_split"]

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


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
