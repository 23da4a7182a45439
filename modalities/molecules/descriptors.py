"""RDKit 2-D descriptors of a molecule, and their z-scoring with training statistics (GROVER's fine-tuning
features: the descriptors join the encoder's readout in the prediction head)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from rdkit import Chem

__all__ = ["DescriptorScaler", "descriptor_names", "rdkit_descriptors"]


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
