"""The speckle simulator: exponential single-look intensity, spatial correlation like real SLCs, exact mean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modalities.sar.readers import find_slc_files, read_slc
from modalities.sar.simulate import clean_reflectivity, simulate_corpus, simulate_slc, transfer_function


def _lag1(z: np.ndarray, axis: int) -> float:
    z = z - z.mean()
    return float(np.abs(np.mean(z * np.conj(np.roll(z, 1, axis)))) / np.mean(np.abs(z) ** 2))


def test_flat_scene_gives_fully_developed_correlated_speckle():
    z, expected = simulate_slc(np.full((256, 256), 400.0), seed=0)
    i = np.abs(z.astype(np.complex128)) ** 2
    np.testing.assert_allclose(expected, 400.0, rtol=1e-6)  # |h|^2 sums to 1
    assert i.mean() == pytest.approx(400.0, rel=0.05)
    assert i.var() / i.mean() ** 2 == pytest.approx(1.0, abs=0.1)  # single look: exponential, ENL 1
    assert np.mean(i < i.mean()) == pytest.approx(1 - np.exp(-1), abs=0.02)  # the exponential CDF at the mean
    for axis in (0, 1):  # lag-1 correlation of real SLCs is 0.2-0.5 (../shared/data/sar/SOURCES.md)
        assert 0.2 < _lag1(z, axis) < 0.5


def test_transfer_function_is_normalised_and_the_mean_follows_the_picture():
    h = transfer_function((64, 80))
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0)
    r = clean_reflectivity("camera")
    z, expected = simulate_slc(r, seed=1)
    ratio = (np.abs(z.astype(np.complex128)) ** 2).mean() / expected.mean()
    assert ratio == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(expected.ravel(), r.ravel())[0, 1] > 0.95


def test_corpus_is_built_once_and_read_like_real_data(tmp_path):
    out = simulate_corpus(tmp_path / "sim", names=("coins", "text"))
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["shapes"] == {"coins": [303, 384], "text": [172, 448]}
    assert [p.name for p in find_slc_files(out)] == ["coins.npy", "text.npy"]
    assert read_slc(out / "coins.npy").dtype == np.complex64
    stamp = (out / "coins.npy").stat().st_mtime_ns
    simulate_corpus(tmp_path / "sim", names=("coins", "text"))
    assert (out / "coins.npy").stat().st_mtime_ns == stamp
