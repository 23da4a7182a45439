"""MERLIN: the loss equals its formula, its minimiser is the reflectivity, the parts alternate, and real training
steps on simulated speckle raise PSNR over the noisy input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from modalities.sar.patches import SLCPatches
from modalities.sar.simulate import simulate_corpus
from pretrain.config import ConfigError
from pretrain.objectives.merlin import Merlin, merlin_loss


def test_loss_equals_the_gaussian_nll_on_a_hand_computed_case():
    log_r = torch.tensor([[math.log(2.0), math.log(8.0)]])
    b = torch.tensor([[1.0, 2.0]])
    # 0.5 log R + b^2 / R: (0.5 ln 2 + 1/2) and (0.5 ln 8 + 4/8)
    expected = 0.5 * ((0.5 * math.log(2) + 0.5) + (0.5 * math.log(8) + 0.5))
    assert merlin_loss(log_r, b, eps=0.0).item() == pytest.approx(expected, rel=1e-6)
    # and it is -log N(b; 0, R/2) minus the constant 0.5 log(pi)
    nll = -torch.distributions.Normal(0.0, torch.exp(log_r / 2) / math.sqrt(2)).log_prob(b).mean()
    assert merlin_loss(log_r, b, eps=0.0).item() == pytest.approx(nll.item() - 0.5 * math.log(math.pi), rel=1e-6)


def test_the_minimiser_is_the_reflectivity():
    """Over many draws b ~ N(0, R/2), the log R minimising the mean loss is log R (unbiased in intensity)."""
    torch.manual_seed(0)
    r_true = 5.0
    b = torch.randn(200_000) * math.sqrt(r_true / 2)
    log_r = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_r], max_iter=50)

    def closure():
        opt.zero_grad()
        loss = merlin_loss(log_r.expand_as(b), b, eps=0.0)
        loss.backward()
        return loss

    opt.step(closure)
    assert math.exp(log_r.item()) == pytest.approx(r_true, rel=0.02)


def test_parts_alternate_by_sample_seed():
    obj = Merlin(models.create("merlin_unet", width=8, log_min=-2.0, log_max=6.0))
    image = torch.stack([torch.full((2, 32, 32), 1.0), torch.full((2, 32, 32), 1.0)])
    image[:, 1] = 2.0  # imaginary parts
    inputs, targets, flip = obj._parts({"image": image, "seed": torch.tensor([4, 7])})
    assert flip.tolist() == [False, True]
    assert inputs[0].unique().item() == 1.0 and targets[0].unique().item() == 2.0  # real -> imaginary
    assert inputs[1].unique().item() == 2.0 and targets[1].unique().item() == 1.0  # imaginary -> real
    out = obj({"image": image, "seed": torch.tensor([4, 7])})
    assert out["loss"].item() == pytest.approx(0.5 * (out["nll_imag_from_real"] + out["nll_real_from_imag"]).item())


def test_wrong_encoder_is_refused():
    with pytest.raises(ConfigError, match="merlin_unet"):
        Merlin(torch.nn.Linear(2, 2))


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    return simulate_corpus(tmp_path_factory.mktemp("sarsim"), names=("brick", "camera", "moon"))


def test_bind_dataset_sets_the_sensor_statistics(sim_dir):
    ds = SLCPatches(sim_dir, "train", patch=64, patches_per_scene=4)
    obj = Merlin(models.create("merlin_unet", width=8))
    obj.bind_dataset(ds)
    enc = obj.encoder
    assert enc.log_min < enc.log_max and enc.config["log_max"] == enc.log_max
    # the amplitudes of the simulated parts are ~5..100: their log range must hold ~log(100)
    assert enc.log_min < 1.0 < math.log(100.0) < enc.log_max + 1.0



def test_training_steps_lower_the_held_out_nll(sim_dir, one_thread):
    """Real training steps on simulated speckle: the training and held-out NLL fall. (MERLIN's first steps
    overshoot the reflectivity, whose over-estimation the NLL penalises only logarithmically, so PSNR overtakes the
    noisy input only after ~100 steps: benchmarks/sar_despeckling.py measures it on trained models, and
    tests/models/test_unet2d.py checks the inference maths with the published weights.)"""
    torch.manual_seed(0)
    ds = SLCPatches(sim_dir, "train", patch=64, patches_per_scene=64)
    val = SLCPatches(sim_dir, "val", patch=64, patches_per_scene=4)
    obj = Merlin(models.create("merlin_unet", width=8))
    obj.bind_dataset(ds)
    batch_val = {k: torch.stack([val[i][k] for i in range(len(val))]) for k in ("image", "clean")}
    before = obj.monitor(batch_val)
    opt = torch.optim.Adam(obj.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    losses = []
    for step in range(30):
        keys = [(int(i), int(rng.integers(1 << 30))) for i in rng.integers(0, len(ds), 4)]
        items = [ds[k] for k in keys]
        batch = {"image": torch.stack([it["image"] for it in items]), "seed": torch.tensor([k[1] for k in keys])}
        loss = obj(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(obj.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    after = obj.monitor(batch_val)
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    assert after["val_nll"] < 0.1 * before["val_nll"]
    assert set(after) == {"val_nll", "ratio_mean", "psnr"}
