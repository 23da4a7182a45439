"""Golden outputs of the Filter2Noise authors' code, for tests/golden/filter2noise.npz (parity test:
tests/pretrain/objectives/test_filter2noise_parity.py).

Given the authors' checkout (``--reference PATH``, the folder holding their ``filter2noise.py``; not shipped here),
this imports their module and records, on a small synthetic noisy slice (a smooth phantom plus correlated noise, made
here from a seed, so no data of theirs is copied):

- their initial weights (``DenoisingPipeline(2 stages, patch 8)`` after ``torch.manual_seed(seed)``) and, per stage,
  the predicted sigma maps;
- their ``Downsampler`` pair and ``ELS`` shuffle of the slice;
- the model output and the four loss terms of their ``LossFunction`` (captured from its ``F.l1_loss`` calls, in
  their order: resolution, the two cross-scale terms, consistency, edge) and the total;
- ``--steps`` training steps as their ``main()`` runs them (AdamW(model.parameters(), lr 1e-3, weight decay 0.01) +
  OneCycleLR over the same number of steps): the loss before each step and the final weights and output.

    python benchmarks/parity/filter2noise_golden.py --reference ~/src/Filter2Noise
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def phantom(size: int, seed: int) -> np.ndarray:
    """A [0, 1] slice: disc + ellipse + bright insert, then noise correlated over ~1.5 pixels (low-dose like)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    img = 0.15 + 0.35 * (xx**2 + yy**2 < 0.16) + 0.15 * ((xx - 0.1) ** 2 / 0.02 + (yy + 0.05) ** 2 / 0.06 < 1)
    img += 0.3 * ((xx + 0.15) ** 2 + (yy - 0.12) ** 2 < 0.004)
    noise = rng.normal(0.0, 0.05, (size + 4, size + 4))
    k = np.exp(-np.arange(-2, 3) ** 2 / (2 * 1.2**2))
    noise = np.apply_along_axis(lambda r: np.convolve(r, k / np.linalg.norm(k), "same"), 0, noise)
    noise = np.apply_along_axis(lambda r: np.convolve(r, k / np.linalg.norm(k), "same"), 1, noise)
    return np.clip(img + noise[2:-2, 2:-2], 0.0, 1.0).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="the authors' Filter2Noise checkout")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=77, help="their setup_environment default")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--edge-weight", type=float, default=400.0, help="their main(): lambda 400")
    p.add_argument("--out", type=Path, default=REPO / "tests" / "golden" / "filter2noise.npz")
    args = p.parse_args()

    spec = importlib.util.spec_from_file_location("f2n_reference", args.reference.expanduser() / "filter2noise.py")
    ref = importlib.util.module_from_spec(spec)
    sys.modules["f2n_reference"] = ref
    spec.loader.exec_module(ref)
    torch.set_num_threads(1)

    noisy = phantom(args.size, seed=1)
    x = ref.prepare_image(noisy)
    torch.manual_seed(args.seed)
    model = ref.DenoisingPipeline(num_stages=2, patch_size=8)
    with torch.no_grad():
        out0, sigmas0 = model(x, return_sigmas=True)  # materialises the lazy layers in their order
    golden: dict[str, np.ndarray] = {"noisy": noisy, "output0": out0.numpy()[0, 0],
                                     "edge_weight": np.float64(args.edge_weight), "steps": np.int64(args.steps)}
    for i, s in enumerate(sigmas0):
        golden[f"sigmas0_stage{i}"] = s.numpy()[0, ::8, ::8]  # [H / 8, W / 8, 3]: sigma_x, sigma_y, sigma_r per patch
    golden.update({f"init/{k}": v.detach().clone().numpy() for k, v in model.state_dict().items()})
    d1, d2 = ref.Downsampler(x)
    golden.update(down1=d1.numpy()[0, 0], down2=d2.numpy()[0, 0], els1=ref.ELS(d1).numpy()[0, 0])

    calls: list[float] = []
    l1 = ref.F.l1_loss

    def recording_l1(a, b, *rest, **kw):
        v = l1(a, b, *rest, **kw)
        calls.append(float(v))
        return v

    loss_fn = ref.LossFunction("cpu", lambda_=args.edge_weight)
    ref.F.l1_loss = recording_l1
    try:
        with torch.no_grad():
            total = float(loss_fn(x, model))
    finally:
        ref.F.l1_loss = l1
    resolution, cross1, cross2, consistency, edge = calls
    golden["terms0"] = np.array([resolution / 3, (cross1 + cross2) / 3, consistency / 3, args.edge_weight * edge,
                                 total])

    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.001, epochs=args.steps, steps_per_epoch=1)
    losses = []
    for _ in range(args.steps):  # their train_model's step
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x, model)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    golden["train_losses"] = np.array(losses)
    golden.update({f"final/{k}": v.numpy() for k, v in model.state_dict().items()})
    with torch.no_grad():
        golden["output_final"] = model(x).numpy()[0, 0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **golden)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB): losses {[round(v, 5) for v in losses]}")


if __name__ == "__main__":
    main()
