"""The contracts over every registry, on real data through the real pipeline (recipe -> dataset -> collate ->
objective), as timm tests its models:

- every objective: on a real batch of a modality it serves, a scalar finite loss whose gradients reach the encoder,
  and an encoder that exports (``export_encoder`` -> ``save_pretrained`` -> ``load_pretrained``);
- every modality: a dataset builds from real files, a batch of it collates, and a path that does not exist is refused
  in one line naming it.

A newly registered objective or modality fails here until it has an entry in ``CASES`` / ``DATA``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import models
import modalities
from pretrain import config as config_mod
from pretrain import objectives
from pretrain.loop import prepare_data
from pretrain.sampling import KeyedDataset
from tests.conftest import shared_data

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "O=C(O)c1ccccc1", "CC(C)Cc1ccc(C)cc1",
          "C1CCNCC1", "ClC(Cl)Cl"]


def molecules_file(tmp: Path) -> Path:
    path = tmp / "molecules.smi"
    path.write_text("\n".join(SMILES) + "\n")
    return path


# modality -> (real data path or a builder of one, options making one batch small and quick)
DATA: dict[str, tuple[Any, list[str]]] = {
    "ecg": (lambda tmp: shared_data("signals/mitdb"), ["data.window_s=2.0"]),
    "ppg": (lambda tmp: shared_data("signals"), ["data.window_s=8.0"]),  # every record with a PPG channel
    "eeg": (lambda tmp: shared_data("signals/eeg"), []),
    "ct": (lambda tmp: shared_data("ct"), ["data.patch=32"]),
    "sar": (lambda tmp: shared_data("sar"), ["data.patch=64"]),
    "molecules": (molecules_file, []),
    "lidar": (lambda tmp: shared_data("3d/semantickitti"), []),
    "scenes": (lambda tmp: shared_data("3d/sensaturban"), ["data.augment.max_points=1500", "data.grid_size=0.1"]),
}
# objective -> (modality, options giving a small encoder)
CASES: dict[str, tuple[str, list[str]]] = {
    "jepa": ("ecg", ["model.dim=32", "model.depth=1", "model.num_heads=2", "objective.predictor_dim=32",
                     "objective.predictor_depth=1", "objective.predictor_heads=2"]),
    "vicreg": ("ecg", ["model.dim=32", "model.depth=1", "model.num_heads=2", "objective.projector_dim=32"]),
    "barlow_twins": ("ecg", ["model.dim=32", "model.depth=1", "model.num_heads=2", "objective.projector_dim=32"]),
    "infonce": ("ppg", ["model.embed_dim=32"]),
    "equivariance": ("ecg", ["model.dim=32", "model.depth=1", "model.num_heads=2"]),
    "cross_modal": ("ppg", ["model.embed_dim=32", "data.channels=[PPG,ECG]"]),
    "vq_reconstruction": ("eeg", []),
    "filter2noise": ("ct", []),
    "zs_n2n": ("ct", ["model.name=zsn2n"]),
    "merlin": ("sar", ["model.width=8"]),
    "grover": ("molecules", ["model.hidden=32", "objective.atom_vocab_size=0", "objective.bond_vocab_size=0"]),
    "e_ssl3d": ("lidar", ["model.name=sparse_unet_xs", "data.max_points=8000"]),
    "msm": ("scenes", []),
}
NOT_PRETRAINING = {"supervised": "the fine-tuning objective; its contract is tests/pretrain/test_finetune.py"}


def resolve(modality: str, objective: str | None, options: list[str], tmp: Path) -> tuple[Any, Any, dict]:
    mod = modalities.get(modality)
    path_or_builder, data_options = DATA[modality]
    path = path_or_builder(tmp)
    extra = {"data": {"path": str(path)}, "train": {"batch_size": 4, "max_steps": 1}}
    if objective is not None:
        extra["objective"] = {"name": objective}
    cfg = config_mod.resolve(mod.recipe, overrides=[*data_options, *options], extra=extra)
    return mod, cfg, prepare_data(cfg, mod)


def first_batch(mod: Any, dataset: Any, n: int = 4) -> Any:
    """``n`` samples spread over the dataset (different records, so contrastive objectives have negatives)."""
    keyed = KeyedDataset(dataset)
    return mod.collate([keyed[(i * len(dataset) // n, 1000 + i)] for i in range(n)])


@pytest.mark.parametrize("name", objectives.names())
def test_every_objective_trains_and_exports(name, tmp_path):
    if name in NOT_PRETRAINING:
        assert not objectives.get(name).self_supervised, name
        return
    assert name in CASES, f"{name}: registered without a case in tests/pretrain/test_contract.py"
    modality, options = CASES[name]
    cls = objectives.get(name)
    mod, cfg, data_cfg = resolve(modality, name, options, tmp_path)
    objectives.check_compatible(cls, mod)
    dataset = mod.build_dataset(data_cfg, "train", cls.views)
    batch = first_batch(mod, dataset)
    torch.manual_seed(0)
    encoder = models.create(**cfg.model)
    objective = objectives.create(encoder, cfg.objective)
    objective.bind_dataset(dataset)
    objective.train()
    out = objective(batch)
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), (name, loss)
    loss.backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads), f"{name}: no gradient reaches the encoder"
    objective.on_step_end(1, 10)

    exported = objective.export_encoder()
    folder = models.save_pretrained(exported, tmp_path / "encoder")
    objective.export_files(folder)
    back = models.load_pretrained(folder)
    assert back.config == exported.config
    for k, v in exported.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), (name, k)


@pytest.mark.parametrize("name", modalities.names())
def test_every_modality_builds_collates_and_names_a_bad_path(name, tmp_path):
    assert name in DATA, f"{name}: registered without data in tests/pretrain/test_contract.py"
    mod, cfg, data_cfg = resolve(name, None, [], tmp_path)
    dataset = mod.build_dataset(data_cfg, "train", 0)
    assert len(dataset) > 0
    batch = first_batch(mod, dataset, n=2)
    assert batch is not None
    missing = tmp_path / "no_such_folder"
    bad = config_mod.resolve(mod.recipe, extra={"data": {"path": str(missing)}})
    with pytest.raises(modalities.DataError) as err:
        prepare_data(bad, mod)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", modalities.names())
def test_every_modality_types_its_data_options(name, tmp_path):
    """The ``data`` section is the modality's own options dataclass: the resolved recipe is its defaults plus what the
    recipe sets, a misspelt option and a wrong type are refused in one line naming them, and the resolved config
    survives ``config.yaml``."""
    from modalities.options import DataOptions

    mod = modalities.get(name)
    assert issubclass(mod.options, DataOptions) and mod.options is not DataOptions, f"{name}: no options dataclass"
    cfg = config_mod.resolve(mod.recipe)
    assert type(cfg.data) is mod.options
    sets = config_mod.load_yaml(mod.recipe).get("data") or {}
    assert cfg.data.to_dict() == mod.options.of(sets).to_dict()
    assert all(cfg.data[k] != mod.options.of({})[k] for k in sets), f"{name}: the recipe repeats a default"
    with pytest.raises(config_mod.ConfigError, match=r"^data\.pathh: unknown option for \w+Options; known: path, "):
        config_mod.resolve(mod.recipe, overrides=["data.pathh=x"])
    with pytest.raises(config_mod.ConfigError, match=r"^data\.split_seed: expected an integer, got 'one'$"):
        config_mod.resolve(mod.recipe, overrides=["data.split_seed=one"])
    config_mod.save(cfg, tmp_path / "config.yaml")
    assert config_mod.load_run_config(tmp_path / "config.yaml").to_dict() == cfg.to_dict()
