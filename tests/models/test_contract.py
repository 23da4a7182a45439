"""The contract every registered encoder keeps (as timm tests its models): over ``models.list_models()``, each is
created by name, embeds a real input of its kind into float[B, D], passes gradients back from its forward output,
and survives ``save_pretrained`` -> ``load_pretrained`` bit-exactly without unpickling anything.

A newly registered encoder fails here until it has an input below (``INPUTS``): one real example per input kind
(12-lead ECG from the simulator, molecules featurised by RDKit, a SemanticKITTI scan, a CT slice in HU, a SAR
amplitude image).
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pytest
import torch

import models
from tests.conftest import shared_data

SMALL = {  # the paper-size encoders at a width that keeps the test fast; their own sizes are tested elsewhere
    "vit1d_s": dict(depth=2), "vit1d_b": dict(depth=2), "grover_base": dict(hidden=64), "grover_large": dict(hidden=64),
    "sparse_unet": dict(channels=[16, 24, 32, 48, 64]),
}


@lru_cache(maxsize=None)
def ecg(channels: int = 12, n: int = 500) -> torch.Tensor:
    """Two windows of a simulated 12-lead ECG at 500 Hz in mV (the dipole simulator of modalities.ecg), the first
    ``channels`` leads."""
    from modalities.ecg.simulate import simulate_subject, subject_parameters

    x = simulate_subject(subject_parameters(0, 0), duration_s=2 * n / 500 + 0.5, fs=500).T
    x = np.asarray(x, np.float32)[:channels, :2 * n].reshape(channels, 2, n).transpose(1, 0, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


@lru_cache(maxsize=None)
def molecules() -> Any:
    from torch_geometric.data import Data

    from modalities.molecules import collate
    from modalities.molecules.featurize import graph_arrays, to_mol

    graphs = []
    for smiles in ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"):
        x, edge_index, edge_attr = graph_arrays(to_mol(smiles))
        graphs.append(Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(edge_index),
                           edge_attr=torch.from_numpy(edge_attr)))
    return collate(graphs)


@lru_cache(maxsize=None)
def kitti(voxel: float = 0.25) -> dict[str, torch.Tensor]:
    """Frames 0 and 1 of SemanticKITTI sequence 00 cropped to +-12 m, in the Pointcept point-dict convention."""
    root = shared_data("3d/semantickitti/sequences/00/velodyne")
    coords, feats, offset = [], [], []
    for name in ("000000.bin", "000001.bin"):
        a = np.fromfile(root / name, dtype=np.float32).reshape(-1, 4)
        a = a[(np.abs(a[:, 0]) < 12) & (np.abs(a[:, 1]) < 12) & (a[:, 2] > -3) & (a[:, 2] < 1)][::8]
        coords.append(np.floor((a[:, :3] - np.array([-12, -12, -3], np.float32)) / voxel).astype(np.int32))
        feats.append(a)
        offset.append(sum(len(c) for c in coords))
    return {"grid_coord": torch.from_numpy(np.concatenate(coords)), "feat": torch.from_numpy(np.concatenate(feats)),
            "offset": torch.tensor(offset, dtype=torch.int64)}


@lru_cache(maxsize=None)
def ct_slice() -> torch.Tensor:
    """A 64 x 64 crop of pydicom-data's CT_small.dcm in HU, float[2, 1, 64, 64] (two crops)."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return torch.from_numpy(np.stack([hu[None, :64, :64], hu[None, 64:, 64:]]))


@lru_cache(maxsize=None)
def sar_amplitude() -> torch.Tensor:
    """Two 64 x 64 single-look amplitude crops simulated from a clean reflectivity map (modalities.sar)."""
    from modalities.sar.simulate import clean_reflectivity, simulate_slc

    r = clean_reflectivity("camera")[:128, :128]
    amp = np.abs(simulate_slc(r, seed=0)[0]).astype(np.float32)
    return torch.from_numpy(np.stack([amp[None, :64, :64], amp[None, 64:, 64:]]))


INPUTS: dict[str, Callable[[], Any]] = {
    "vit1d_xs": ecg, "vit1d_s": ecg, "vit1d_b": ecg,
    "efficientnet1d": lambda: ecg(4, 640),
    "eegformer_xs": lambda: ecg(4, 512), "eegformer_s": lambda: ecg(4, 512),
    "grover_tiny": molecules, "grover_base": molecules, "grover_large": molecules,
    "sparse_unet": kitti, "sparse_unet_xs": kitti, "second_8x": kitti,
    "merlin_unet": sar_amplitude, "bilateral": ct_slice, "zsn2n": ct_slice,
    "prediction_model": ecg,
}
OPTIONS: dict[str, dict[str, Any]] = {
    "prediction_model": dict(encoder={"name": "vit1d_xs", "depth": 1}, out_dim=3),
    "merlin_unet": dict(log_min=-1.5, log_max=10.0),
}


def batch_size(x: Any) -> int:
    if isinstance(x, dict):
        return len(x["offset"])
    return int(x.num_graphs) if hasattr(x, "num_graphs") else int(x.shape[0])


def tensors(out: Any) -> list[torch.Tensor]:
    """Every floating tensor in a forward output (a tensor, a dict, a tuple or a sparse tensor)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if hasattr(out, "features"):  # spconv SparseConvTensor
        return [out.features]
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in tensors(v)]
    return []


@pytest.mark.parametrize("name", models.list_models())
def test_every_encoder_embeds_backpropagates_and_round_trips(name, tmp_path, monkeypatch):
    assert name in INPUTS, f"{name}: registered without an example input in tests/models/test_contract.py"
    x = INPUTS[name]()
    torch.manual_seed(0)
    model = models.create(name, **{**SMALL.get(name, {}), **OPTIONS.get(name, {})})
    assert model.config["name"] == name

    model.train()
    outputs = tensors(model(x))
    assert outputs, f"{name}: forward returned no floating tensor"
    sum(t.float().square().mean() for t in outputs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads), name

    model.eval()
    with torch.no_grad():
        z = model.embed(x)
    assert z.ndim == 2 and z.shape[0] == batch_size(x) and torch.isfinite(z).all(), (name, tuple(z.shape))
    if hasattr(model, "embed_dim"):
        assert z.shape[1] == model.embed_dim

    folder = models.save_pretrained(model, tmp_path / "enc", extra={"contract": name})

    def no_pickle(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_pretrained must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = models.load_pretrained(folder)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.pretrained_extra == {"contract": name}
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (name, k)
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), z), name
