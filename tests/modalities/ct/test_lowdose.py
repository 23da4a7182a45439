"""Low-dose simulation physics, the slice/patch dataset and the denoising probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modalities
from modalities.base import DataError
from modalities.ct.dataset import CTSlices
from modalities.ct.lowdose import simulate_low_dose
from modalities.ct.probes import probe_targets, uniform_box
from modalities.ct.volumes import index_ct
from tests.conftest import shared_data


def water_cylinder(n: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    return np.where(xx**2 + yy**2 < (0.4 * n) ** 2, 0.0, -1000.0)


def test_noise_std_scales_as_one_over_sqrt_i0_on_a_uniform_region():
    phantom = water_cylinder()
    doses = [4e5, 1e5, 2.5e4]
    clean, noisy = simulate_low_dose(phantom, pixel_mm=1.5, i0=doses, seed=0, n_angles=180)
    box = (slice(44, 84), slice(44, 84))  # inside the water disc
    assert abs(float(clean[box].mean())) < 5.0  # the noise-free reconstruction keeps water at 0 HU
    stds = [float((n - clean)[box].std()) for n in noisy]
    assert stds[0] < stds[1] < stds[2]
    for k in range(2):  # I0 / 4 -> std x 2 (Poisson); electronic noise adds a little at the lowest dose
        assert stds[k + 1] / stds[k] == pytest.approx(2.0, rel=0.15)


def test_simulation_rejects_bad_dose():
    with pytest.raises(DataError, match="data.dose_i0: incident photon count must be > 0"):
        simulate_low_dose(water_cylinder(16), 1.0, [0.0])


def test_dataset_patches_clean_references_and_padding(tmp_path):
    refs = index_ct(shared_data("ct") / "CT_small.dcm")
    ds = CTSlices(refs, "train", patch=64, dose_i0=[5e4, 2.5e4], n_angles=90, cache_dir=tmp_path)
    assert len(ds) == 2
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert a["image"].shape == a["clean"].shape == (1, 64, 64) and a["image"].dtype == torch.float32
    assert torch.equal(a["image"], b["image"])  # the crop is a function of the seed
    assert a["spacing"].tolist() == pytest.approx([0.661468, 0.661468])
    noise = [float((ds[(k, 1)]["image"] - ds[(k, 1)]["clean"]).std()) for k in range(2)]
    assert noise[1] > noise[0]  # I0 2.5e4 is noisier than 5e4
    big = CTSlices(refs, "val", patch=160, dose_i0=None)
    s = big[0]
    assert s["image"].shape == (1, 160, 160) and "clean" not in s
    assert float(s["image"][0, 150, 150]) == -1024.0  # padded with air
    with pytest.raises(DataError, match="data.patch: must be >= 8"):
        CTSlices(refs, patch=4)


def test_default_corpus_is_the_packaged_real_ct(tmp_path):
    modality = modalities.get("ct")
    path = modality.default_data(tmp_path)
    names = sorted(p.name for p in path.glob("*.dcm"))
    assert names == ["693_UNCR.dcm", "CT_small.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"]
    with pytest.raises(DataError, match="data.patch: slices have different sizes"):
        modality.build_dataset({"path": str(path), "patch": None}, "train", 0)
    with pytest.raises(DataError, match="data.slices: 9 is not a slice index"):
        modality.build_dataset({"path": str(path), "slices": [9]}, "train", 0)


def test_probe_is_real_slices_at_simulated_doses(tmp_path):
    probes = probe_targets({"probe_doses": [1e5], "n_angles": 60, "cache_dir": str(tmp_path)})
    ps = probes["lowdose_real_slices"]
    assert ps.task == "denoising" and len(ps.x_test) == len(ps.y_test) == 3
    assert ps.meta["window"] == (-160.0, 240.0) and ps.meta["data_range"] == 400.0
    for x, y, (box,) in zip(ps.x_test, ps.y_test, ps.meta["uniform_regions"]):
        assert x.shape == y.shape == (1, 512, 512)
        r0, r1, c0, c1 = box
        assert -100 <= float(y[0, r0:r1, c0:c1].mean()) <= 150  # a soft-tissue box
        assert float(x[0, r0:r1, c0:c1].std()) > float(y[0, r0:r1, c0:c1].std())


def test_uniform_box_finds_the_flat_region():
    img = np.random.default_rng(0).normal(0, 50, (64, 64))
    img[24:60, 12:48] = 40.0
    r0, r1, c0, c1 = uniform_box(img, size=24)
    assert img[r0:r1, c0:c1].std() == 0.0
