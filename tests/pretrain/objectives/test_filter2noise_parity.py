"""Filter2Noise equals the authors' code: golden outputs of their ``filter2noise.py`` (tests/golden/filter2noise.npz,
written by benchmarks/parity/filter2noise_golden.py --reference PATH) on a synthetic 64 x 64 slice, from their
initial weights: the predicted sigmas, the filter output, the downsampler and shuffle, each loss term, and ten
training steps with their optimiser (AdamW on every parameter + OneCycleLR), i.e. our ``per_image`` recipe's
``optim`` section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.bilateral import BilateralDenoiser
from pretrain.config import OptimConfig
from pretrain.loop import param_groups
from pretrain.objectives.filter2noise import dog_kernel, filter2noise_loss, local_shuffle
from pretrain.objectives.zs_n2n import pair_downsample
from pretrain.schedules import lr_beta1_at

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "filter2noise.npz"
# their SigmaPredictor's layer names -> ours (models/bilateral.py)
RENAME = {"sigma_predictor.query": "features.q", "sigma_predictor.key": "features.k",
          "sigma_predictor.value": "features.v", "sigma_predictor.sigma_query": "sigma_attention.q",
          "sigma_predictor.sigma_key": "sigma_attention.k", "sigma_predictor.sigma_value": "sigma_attention.v",
          "sigma_predictor.norm": "norm", "sigma_predictor.sigma_proj": "proj"}


def ours_from(golden: dict, prefix: str) -> BilateralDenoiser:
    state = {}
    for key, value in golden.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            for theirs, mine in RENAME.items():
                name = name.replace(theirs, mine)
            state[name] = torch.from_numpy(value)
    model = BilateralDenoiser(stages=2, patch_size=8, hu_range=(0.0, 1.0), sigma_init=None)
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def golden() -> dict:
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


def image(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)[None, None]


def test_filter_and_sigmas_equal_the_reference(golden):
    model = ours_from(golden, "init/")
    x = image(golden["noisy"])
    with torch.no_grad():
        out, sigmas = model.filter_with_sigmas(x)
    for i, s in enumerate(sigmas):  # ours [1, 3, H / 8, W / 8]; theirs per patch [H / 8, W / 8, 3]
        np.testing.assert_allclose(s[0].permute(1, 2, 0).numpy(), golden[f"sigmas0_stage{i}"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0, 0].numpy(), golden["output0"], atol=2e-6)
    # and the filter does something: the output is not the input
    assert np.abs(golden["output0"] - golden["noisy"]).mean() > 1e-3


def test_downsampler_and_local_shuffle_equal_the_reference(golden):
    d1, d2 = pair_downsample(image(golden["noisy"]))
    np.testing.assert_array_equal(d1[0, 0].numpy(), golden["down1"])
    np.testing.assert_array_equal(d2[0, 0].numpy(), golden["down2"])
    np.testing.assert_array_equal(local_shuffle(d1)[0, 0].numpy(), golden["els1"])


def test_each_loss_term_equals_the_reference(golden):
    model = ours_from(golden, "init/")
    with torch.no_grad():
        terms = filter2noise_loss(model, image(golden["noisy"]), dog_kernel(), float(golden["edge_weight"]))
    got = [float(terms[k]) for k in ("resolution", "cross_scale", "consistency", "edge", "loss")]
    np.testing.assert_allclose(got, golden["terms0"], rtol=1e-5)


def test_training_steps_equal_the_reference(golden):
    """Their train_model: AdamW(model.parameters(), lr 1e-3, wd 0.01) + OneCycleLR(total = steps); ours: the
    ``per_image`` recipe's optim section (schedule one_cycle, beta1_cycle, decay_all) on the same steps."""
    torch.set_num_threads(1)
    model = ours_from(golden, "init/")
    x, steps = image(golden["noisy"]), int(golden["steps"])
    o = OptimConfig(lr=1e-3, min_lr=1e-3 / 25 / 1e4, warmup_steps=round(0.3 * steps), weight_decay=0.01,
                    weight_decay_end=0.01, betas=(0.9, 0.999), eps=1e-8, schedule="one_cycle",
                    beta1_cycle=[0.85, 0.95], decay_all=True)
    o.validate()
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay, o.decay_all), lr=o.lr, betas=o.betas, eps=o.eps)
    dog, losses = dog_kernel(), []
    for step in range(steps):
        lr, beta1 = lr_beta1_at(o, step, steps)
        for g in opt.param_groups:
            g["lr"], g["betas"] = lr, (beta1, o.betas[1])
        opt.zero_grad(set_to_none=True)
        loss = filter2noise_loss(model, x, dog, float(golden["edge_weight"]))["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    np.testing.assert_allclose(losses, golden["train_losses"], rtol=1e-4)
    final = ours_from(golden, "final/")
    for (name, p), q in zip(model.named_parameters(), final.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=2e-5, err_msg=name)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[0, 0].numpy(), golden["output_final"], atol=1e-5)
    assert losses[-1] < losses[0] - 1e-3  # the steps trained: the loss fell
