"""ZS-N2N: the loss against its formula, and real training on a real CT slice at a simulated low dose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from pretrain.objectives.zs_n2n import ZSN2N, zs_n2n_loss
from tests.pretrain.objectives.test_filter2noise import Scale, np_down, real_slice


def test_loss_equals_the_formula():
    y = np.random.default_rng(2).normal(size=(6, 8))
    loss = zs_n2n_loss(Scale(0.6), torch.tensor(y)[None, None])
    d1, d2 = np_down(y)
    r1, r2 = np_down(0.6 * y)
    expected = (0.5 * (((d1 - 0.6 * d2) ** 2).mean() + ((d2 - 0.6 * d1) ** 2).mean())
                + 0.5 * (((0.6 * d1 - r1) ** 2).mean() + ((0.6 * d2 - r2) ** 2).mean()))
    assert float(loss) == pytest.approx(expected, rel=1e-10)


@pytest.mark.slow
def test_training_raises_psnr_on_a_real_slice_in_the_soft_tissue_scale(tmp_path, one_thread):
    # 150 steps on CT_small at I0 5e4: the default soft-tissue scaling gains 2.6 dB; the 12-bit range of the
    # bilateral filter puts the noise at ~0.01 of the input scale and gains 0.2 dB (models/zsn2n.py)
    s = real_slice(tmp_path)
    noisy, clean = s["image"][None], s["clean"][None]
    gains = {}
    for hu_range in [None, (-1024.0, 3072.0)]:
        torch.manual_seed(0)
        obj = ZSN2N(models.create("zsn2n") if hu_range is None else models.create("zsn2n", hu_range=hu_range))
        opt = torch.optim.Adam(obj.parameters(), lr=1e-3)
        for _ in range(150):
            obj({"image": noisy})["loss"].backward()
            opt.step()
            opt.zero_grad()
        watched = obj.monitor({"image": noisy, "clean": clean})
        gains[hu_range] = watched["psnr_denoised"] - watched["psnr_noisy"]
    assert gains[None] > 1.5, gains
    assert gains[None] > gains[(-1024.0, 3072.0)] + 1.0, gains


@pytest.mark.slow
def test_min_max_normalised_slice_is_denoised_in_its_own_units(tmp_path, run_cache, capsys):
    # issue 22: on a [0, 1] NIfTI read as HU the CNN's soft-tissue scale saw noise of ~1e-4 and the output
    # (-16.5 .. 3.9) was far worse than the input; with the units detected the scale is the mapped window
    from tests.modalities.ct.unit_interval import psnr01, unit_interval_nifti
    from tests.pretrain.objectives.test_filter2noise import denoised_psnr, unit_interval_run

    path, noisy, clean = unit_interval_nifti(tmp_path)
    res = unit_interval_run(tmp_path, "zs_auto", path, objective="zs_n2n", steps=60)
    out = capsys.readouterr().out
    assert "zs_n2n: data.units=unit_interval -> model.hu_range=[0.2109, 0.3086]" in out, out
    assert "falling back" not in out, out
    enc = models.load_pretrained(res.encoder_dir)
    assert enc.config["hu_range"] == pytest.approx([(-160 + 1024) / 4096, (240 + 1024) / 4096])
    denoised = enc.denoise(torch.from_numpy(noisy)[None])[0].numpy()
    assert -0.1 < denoised.min() and denoised.max() < 1.1  # in the input's range
    assert denoised_psnr(res, noisy, clean) > psnr01(noisy, clean) + 0.5


@pytest.mark.slow
def test_never_worse_than_the_noisy_input(tmp_path, run_cache, capsys):
    # the same file declared HU (the old behaviour): the network cannot beat the identity on its own loss, so the
    # run says so and the exported network returns its input
    from tests.modalities.ct.unit_interval import psnr01, unit_interval_nifti
    from tests.pretrain.objectives.test_filter2noise import denoised_psnr, unit_interval_run

    path, noisy, clean = unit_interval_nifti(tmp_path)
    res = unit_interval_run(tmp_path, "zs_hu", path, units="hu", objective="zs_n2n", steps=10)
    out = capsys.readouterr().out
    assert out.count("zs_n2n: after training the network's loss") == 1 and "falling back to the identity" in out
    enc = models.load_pretrained(res.encoder_dir)
    x = torch.from_numpy(noisy)[None]
    torch.testing.assert_close(enc.denoise(x), x, rtol=0, atol=2e-5)  # float32 through (x + 160) / 400
    assert denoised_psnr(res, noisy, clean) == pytest.approx(psnr01(noisy, clean), abs=1e-3)


def test_identity_check(capsys):
    # white noise on a smooth image: a random (untrained) network is worse than the identity on the ZS-N2N loss and
    # falls back to it exactly; a 3 x 3 mean is better than the identity and is kept
    torch.manual_seed(0)
    clean = torch.linspace(0.2, 0.4, 32)[None, None, :, None].expand(1, 1, 32, 32)
    y = clean + 0.02 * torch.randn(1, 1, 32, 32)
    untrained = ZSN2N(models.create("zsn2n", hu_range=[0.0, 1.0]))
    checked = untrained.check_against_identity(y)
    assert checked["fell_back"] == 1.0 and checked["loss"] >= checked["identity_loss"], checked
    assert "falling back to the identity" in capsys.readouterr().out
    torch.testing.assert_close(untrained.encoder.denoise(y[0]), y[0], rtol=0, atol=1e-6)

    class Mean3(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    kept = ZSN2N(Mean3()).check_against_identity(y)
    assert kept["fell_back"] == 0.0 and kept["loss"] < kept["identity_loss"], kept
    assert capsys.readouterr().out == ""
