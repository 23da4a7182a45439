"""Filter2Noise: the downsampler, the local shuffle and the four-term loss against hand computations; real
training on a real CT slice at a simulated low dose, directly and through the one loop (both modes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import models
from modalities.ct.dataset import CTSlices
from modalities.ct.volumes import index_ct
from pretrain.config import OptimConfig, RunConfig, TrainConfig
from pretrain.loop import read_metrics, train
from pretrain.metrics import windowed_psnr
from pretrain.objectives.filter2noise import Filter2Noise, dog_kernel, filter2noise_loss, local_shuffle
from pretrain.objectives.zs_n2n import pair_downsample
from tests.conftest import shared_data


class Scale(nn.Module):
    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x


def np_down(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (y[0::2, 1::2] + y[1::2, 0::2]) / 2, (y[0::2, 0::2] + y[1::2, 1::2]) / 2


def np_shuffle(y: np.ndarray) -> np.ndarray:
    out = y.copy()
    for r in range(0, y.shape[0] - 1, 2):
        for c in range(0, y.shape[1] - 1, 2):
            cells = [(r, c), (r, c + 1), (r + 1, c), (r + 1, c + 1)]
            pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
            i, j = min(pairs, key=lambda p: abs(y[cells[p[0]]] - y[cells[p[1]]]))
            out[cells[i]], out[cells[j]] = y[cells[j]], y[cells[i]]
    return out


def test_pair_downsampler_and_local_shuffle_by_hand():
    y = np.random.default_rng(0).normal(size=(6, 7))
    d1, d2 = pair_downsample(torch.tensor(y)[None, None])
    e1, e2 = np_down(y[:, :6])
    np.testing.assert_allclose(d1[0, 0].numpy(), e1)
    np.testing.assert_allclose(d2[0, 0].numpy(), e2)
    np.testing.assert_allclose(local_shuffle(torch.tensor(y)[None, None])[0, 0].numpy(), np_shuffle(y))


def test_loss_equals_the_formula():
    from scipy.signal import convolve2d

    y = np.random.default_rng(1).normal(size=(8, 8))
    f = Scale(0.7)
    dog = dog_kernel()
    terms = filter2noise_loss(f, torch.tensor(y, dtype=torch.float32)[None, None], dog, edge_weight=350.0)
    d1, d2 = np_down(y)
    f1, f2 = 0.7 * np_shuffle(d1), 0.7 * np_shuffle(d2)
    r1, r2 = np_down(0.7 * y)
    k = dog[0, 0].double().numpy()[::-1, ::-1]  # conv2d is a correlation
    edge = np.abs(np.abs(convolve2d(0.7 * y, k, mode="same")) - np.abs(convolve2d(y, k, mode="same"))).mean()
    expected = (np.abs(f1 - f2).mean() / 3 + (np.abs(f1 - r1).mean() + np.abs(f2 - r2).mean()) / 3
                + np.abs(r1 - r2).mean() / 3 + 350.0 * edge)
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["edge"]) == pytest.approx(350.0 * edge, rel=1e-5)


def test_repeated_slice_is_filtered_once():
    obj = Filter2Noise(models.create("bilateral"))
    x = torch.randn(1, 1, 32, 32) * 50
    one = obj({"image": x, "meta": {"id": ["a"]}})["loss"]
    two = obj({"image": x.repeat(2, 1, 1, 1), "meta": {"id": ["a", "a"]}})["loss"]
    assert float(one) == pytest.approx(float(two), rel=1e-6)


def real_slice(tmp_path, dose: float = 5e4):
    refs = index_ct(shared_data("ct") / "CT_small.dcm")
    return CTSlices(refs, "train", dose_i0=[dose], val_fraction=0.0, n_angles=120, cache_dir=tmp_path)[0]


@pytest.mark.slow
def test_zero_shot_training_raises_psnr_on_a_real_slice(tmp_path):
    s = real_slice(tmp_path)
    noisy, clean = s["image"][None], s["clean"][None]
    torch.manual_seed(0)
    obj = Filter2Noise(models.create("bilateral"))
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3)
    before = obj.monitor({"image": noisy, "clean": clean})
    for _ in range(40):
        obj({"image": noisy})["loss"].backward()
        opt.step()
        opt.zero_grad()
    after = obj.monitor({"image": noisy, "clean": clean})
    assert after["heldout_loss"] < before["heldout_loss"]
    assert after["psnr_denoised"] > after["psnr_noisy"] + 1.0
    assert after["psnr_denoised"] == pytest.approx(
        windowed_psnr(obj.encoder.denoise(noisy), clean, (-160, 240)), rel=1e-6)


@pytest.mark.slow
def test_both_modes_through_the_one_loop(tmp_path, run_cache):
    path = shared_data("ct")
    common = dict(modality="ct", model={"name": "bilateral"}, objective={"name": "filter2noise"},
                  optim=OptimConfig(lr=1e-3, warmup_steps=0))
    # per-image zero-shot: one slice, whole, filtered once per step
    zero_shot = RunConfig(data={"path": str(path), "slices": [1], "patch": None, "dose_i0": [5e4],
                                "val_fraction": 0.0, "n_angles": 120}, **common,
                          train=TrainConfig(max_steps=6, batch_size=2, threads=1, log_every=1, rankme_every=100,
                                            ckpt_every=100, evaluate=False))
    res = train(zero_shot, tmp_path / "zero_shot", progress=False)
    assert models.load_pretrained(res.encoder_dir).config["name"] == "bilateral"
    # dataset mode: patches of every slice at two doses, held-out PSNR monitored against the clean references
    dataset = RunConfig(data={"path": str(path), "patch": 32, "dose_i0": [5e4, 2.5e4], "n_angles": 120}, **common,
                        train=TrainConfig(max_steps=6, batch_size=4, threads=1, log_every=1, rankme_every=3,
                                          rankme_samples=4, ckpt_every=100, evaluate=False))
    train(dataset, tmp_path / "dataset", progress=False)
    rows = read_metrics(tmp_path / "dataset")
    watched = [r for r in rows if "psnr_denoised" in r]
    assert watched and all(np.isfinite(r["psnr_denoised"]) and "heldout_loss" in r for r in watched)


def unit_interval_run(tmp_path, name, data_path, units="auto", model=None, steps=40, objective="filter2noise"):
    """A short per-image (zero-shot) run through the one loop on a one-slice CT file."""
    cfg = RunConfig(modality="ct", data={"path": str(data_path), "slices": [0], "patch": None, "val_fraction": 0.0,
                                         "units": units},
                    model=model or {"name": "bilateral" if objective == "filter2noise" else "zsn2n"},
                    objective={"name": objective}, optim=OptimConfig(lr=1e-3, warmup_steps=0),
                    train=TrainConfig(max_steps=steps, batch_size=2, threads=1, num_workers=0, log_every=10,
                                      rankme_every=1000, ckpt_every=1000, evaluate=False))
    return train(cfg, tmp_path / name, progress=False)


def denoised_psnr(res, noisy, clean) -> float:
    from tests.modalities.ct.unit_interval import psnr01

    enc = models.load_pretrained(res.encoder_dir)
    return psnr01(enc.denoise(torch.from_numpy(noisy)[None])[0].numpy(), clean)


@pytest.mark.slow
def test_min_max_normalised_slice_is_filtered_in_its_own_units(tmp_path, run_cache, capsys):
    # issue 22: a [0, 1] NIfTI read as HU made the filter's ~120 HU range sigma dwarf the whole image (a fixed blur);
    # auto-detected units must do at least as well as model.hu_range=[0, 1] given by hand, and beat the noisy input
    import yaml

    from tests.modalities.ct.unit_interval import psnr01, unit_interval_nifti

    path, noisy, clean = unit_interval_nifti(tmp_path)
    before = psnr01(noisy, clean)
    auto = unit_interval_run(tmp_path, "auto", path)
    out = capsys.readouterr().out
    assert out.count("-> data.units=unit_interval") == 1, out
    assert "filter2noise: data.units=unit_interval -> model.hu_range=[0, 1]" in out, out
    saved = yaml.safe_load((auto.run_dir / "config.yaml").read_text())
    assert saved["data"]["units"] == "unit_interval"
    assert models.load_pretrained(auto.encoder_dir).config["hu_range"] == [0.0, 1.0]
    by_hand = unit_interval_run(tmp_path, "by_hand", path, model={"name": "bilateral", "hu_range": [0.0, 1.0]})
    as_hu = unit_interval_run(tmp_path, "as_hu", path, units="hu")
    psnr = {k: denoised_psnr(r, noisy, clean) for k, r in [("auto", auto), ("by_hand", by_hand), ("as_hu", as_hu)]}
    assert psnr["auto"] > before + 2.0, (before, psnr)
    assert psnr["auto"] >= psnr["by_hand"] - 1e-6, (before, psnr)
    assert psnr["auto"] > psnr["as_hu"] + 2.0, (before, psnr)  # the old behaviour: ~0.2 dB over the input
