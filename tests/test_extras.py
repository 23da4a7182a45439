"""Each modality works with the core plus its own extra only (``pip install modalities[signals]``, ...): in a fresh
interpreter where the libraries of every other extra cannot be imported, the command lists everything, the
modality's recipe resolves, its embedded default builds, a batch collates, and one training step of its recipe's
encoder and objective runs. The extras are read from pyproject.toml, so a library moved between extras, or a new
top-level import of another extra's library, fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# distribution -> import names (where they differ)
IMPORT_NAMES = {"torch-geometric": ["torch_geometric"], "pydicom-data": ["pydicom_data"], "scikit-image": ["skimage"],
                "pylibjpeg-libjpeg": ["libjpeg"], "pylibjpeg-openjpeg": ["openjpeg"], "laspy[lazrs]": ["laspy", "lazrs"]}
MODALITY_EXTRA = {"ecg": "signals", "eeg": "signals", "ppg": "signals", "molecules": "molecules", "ct": "ct",
                  "sar": "sar", "lidar": "points", "scenes": "points"}

CHILD = r"""
import importlib.abc, json, os, sys
blocked = set(json.loads(os.environ["BLOCKED"]))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: another extra)", name=name)
        return None

sys.meta_path.insert(0, Block())
import torch
torch.set_num_threads(1)
from pretrain import cli, objectives
import models, modalities
from pretrain import config as C
from pretrain.loop import prepare_data
from pretrain.sampling import KeyedDataset

assert cli.main([]) == 0
name = os.environ["MODALITY"]
mod = modalities.get(name)
cfg = C.resolve(mod.recipe, demo=True)
data_cfg = prepare_data(cfg, mod)
obj_cls = objectives.get(cfg.objective["name"])
raw = mod.build_dataset(data_cfg, "train", obj_cls.views)
ds = KeyedDataset(raw)
batch = mod.collate([ds[(i % len(ds), i)] for i in range(2)])
batch["step_seed"] = 0
objective = objectives.create(models.create(**cfg.model), cfg.objective)
objective.bind_dataset(raw)
out = objective(batch)
out["loss"].backward()
assert torch.isfinite(out["loss"])
print("OK", name, sorted(m for m in sys.modules if m.split(".")[0] in blocked))
"""


def _extras() -> dict[str, set[str]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    out = {}
    for extra, reqs in meta.items():
        if extra in ("all", "cuda", "dev"):
            continue
        names = set()
        for req in reqs:
            dist = req.split(">")[0].split("=")[0].split("<")[0].strip()
            names.update(IMPORT_NAMES.get(dist, [dist.split("[")[0].replace("-", "_")]))
        out[extra] = names
    return out


def test_all_names_every_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert meta["all"] == [f"modalities[{','.join(_extras())}]"]
    assert set(MODALITY_EXTRA.values()) == set(_extras())


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["ecg", "molecules", "ct", "sar", "lidar"])
def test_a_modality_runs_with_its_extra_only(modality, tmp_path):
    extras = _extras()
    own = extras[MODALITY_EXTRA[modality]]
    blocked = set().union(*extras.values()) - own
    env = {**os.environ, "BLOCKED": json.dumps(sorted(blocked)), "MODALITY": modality, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == f"OK {modality} []"
