"""The typed ``data`` section of molecules (:class:`MoleculeOptions`): every data option the molecule code reads,
its one default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from modalities.options import DataOptions

__all__ = ["MoleculeOptions"]


@dataclass(frozen=True)
class MoleculeOptions(DataOptions):
    """Molecule data options (modalities/molecules/recipe.yaml sets only what differs). ``path`` (base class): a
    .smi/.txt, .csv/.tsv or .sdf file, or a folder of them; ``targets`` (base class), fine-tuning: the property
    column(s) that become ``y``; ``split_seed`` (base class): the seed of the split."""

    smiles_column: str | None = None  # CSV column of SMILES (None: smiles / canonical_smiles / mol, any case)
    strip_salts: bool = True  # keep each molecule's largest (organic) fragment
    # pretraining: random; fine-tuning and probes: scaffold (balanced Bemis-Murcko)
    split: Literal["random", "scaffold"] = "random"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test shares
    min_count: int = 1  # context keys seen fewer times in the training split map to <unk> (index 0)
    # vocabulary caps (<unk> included): the rarest keys beyond them map to <unk>; None: no cap
    max_atom_keys: int | None = 4096
    max_bond_keys: int | None = 4096
    vocab: str | None = None  # a saved vocabulary.json (fine-tuning a pretrained encoder reuses its vocabulary)
    descriptors: bool = False  # fine-tuning: RDKit 2-D descriptors, normalised with training statistics
    cache_dir: str | None = None  # feature cache (None: $MODALITIES_CACHE/molecules)

    @classmethod
    def of(cls, values: Mapping[str, Any] | None = None, section: str = "data") -> "MoleculeOptions":
        """As :meth:`DataOptions.of`; ``targets`` may also be one column name, or null (none: the config.yaml of
        runs made before the options were typed)."""
        if isinstance(values, Mapping) and not isinstance(values, cls) and "targets" in values:
            targets = values["targets"]
            targets = [] if targets is None else [targets] if isinstance(targets, str) else targets
            values = {**values, "targets": targets}
        return super().of(values, section)
