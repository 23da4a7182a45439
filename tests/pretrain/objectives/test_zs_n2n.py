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
