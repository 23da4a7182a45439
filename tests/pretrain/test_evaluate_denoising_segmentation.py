"""The generic denoising and per-point probes of pretrain/evaluate/ (denoising.py, segmentation.py) on real data.

Denoisers here are classical filters (a Gaussian blur) run on a real CT slice with added noise, so the metrics are
checked on a case whose outcome is known; the point probe is fed features computed from the real SensatUrban
crop (colour and height), which must separate its classes far better than a constant feature.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from modalities.base import ProbeSet
from pretrain.evaluate import (denoising_probe, enl, miou, psnr, ratio_image_stats, region_std, segmentation_probe,
                               ssim, summarise_denoising)
from tests.conftest import shared_data


def test_psnr_matches_its_formula():
    ref = np.zeros((8, 8))
    x = ref.copy()
    x[0, 0] = 2.0  # MSE = 4 / 64
    assert psnr(x, ref, 4.0) == pytest.approx(10 * np.log10(16 / (4 / 64)))
    assert psnr(ref, ref, 1.0) == float("inf")


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    rng = np.random.default_rng(0)
    img = gaussian_filter(rng.normal(size=(64, 64)), 3)
    assert ssim(img, img, 1.0) == pytest.approx(1.0)
    assert ssim(img + rng.normal(0, 0.05, img.shape), img, float(np.ptp(img))) < 0.9


def test_enl_and_ratio_of_single_look_speckle():
    rng = np.random.default_rng(1)
    intensity = rng.exponential(1.0, size=(400, 400))  # single-look fully developed speckle on a flat scene
    assert enl(intensity, (0, 400, 0, 400)) == pytest.approx(1.0, abs=0.03)
    stats = ratio_image_stats(intensity, np.ones_like(intensity))  # a perfect despeckler of a flat scene
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=0.02)
    assert stats["ratio_var"] == pytest.approx(1.0, abs=0.05)
    assert region_std(np.arange(16.0).reshape(4, 4), (0, 1, 0, 4)) == pytest.approx(np.std([0, 1, 2, 3]))


def test_miou_hand_case_and_ignore_index():
    y = np.array([0, 0, 1, 1, -1])
    p = np.array([0, 1, 1, 1, 0])
    # class 0: inter 1, union 2; class 1: inter 2, union 3; the -1 point is ignored
    assert miou(y, p) == pytest.approx((1 / 2 + 2 / 3) / 2)


class GaussianDenoiser(torch.nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(gaussian_filter(x.numpy().astype(np.float64), self.sigma))


def test_denoising_probe_on_a_real_ct_slice(tmp_path):
    hu = np.load(shared_data("ct") / "cq500_head_ct_693_UNCR_HU_512.npy").astype(np.float32)[None]
    noisy = hu + np.random.default_rng(0).normal(0, 60, hu.shape).astype(np.float32)
    ps = ProbeSet(x_train=[], y_train=[], x_test=[noisy], y_test=[hu], task="denoising",
                  meta={"window": (-160.0, 240.0), "uniform_regions": [[(300, 330, 240, 270)]], "names": ["cq500"]})
    rows = denoising_probe({"blur": GaussianDenoiser(1.0)}, "ct", ps, tmp_path)
    by = {r["method"]: r for r in rows}
    assert by["blur"]["psnr"] > by["noisy input"]["psnr"] + 3  # a blur removes much of white noise of std 60 HU
    assert by["blur"]["region_std"] < by["noisy input"]["region_std"]
    assert (tmp_path / "ct_0.png").is_file()
    summary = {r["method"]: r for r in summarise_denoising(rows)}
    assert summary["blur"]["psnr"] == pytest.approx(by["blur"]["psnr"])
    assert summary["blur"]["s_per_megapixel"] > 0


class ColourHeightFeatures(torch.nn.Module):
    """Point features read straight from the scene: colour and height (levels: "all" adds height, "last" only
    colour), or a constant (``constant=True``), the probe's floor."""

    def __init__(self, constant: bool = False) -> None:
        super().__init__()
        self.constant = constant

    def point_features(self, points: dict, levels: str = "all") -> torch.Tensor:
        feat = points["feat"]
        if self.constant:
            return torch.ones(len(feat), 1)
        return torch.cat([feat, points["coord"][:, 2:3]], 1) if levels == "all" else feat


def test_segmentation_probe_on_the_real_sensaturban_crop():
    root = shared_data("3d/sensaturban")
    pts = np.fromfile(root / "birmingham_block_0_0002.bin", dtype=np.float32).reshape(-1, 6)
    lab = np.fromfile(root / "birmingham_block_0_0002.label", dtype=np.uint8).astype(np.int64)
    # a 3 m checkerboard of tiles: both halves hold every class (a single cut does not: the crop's west half is
    # nearly all one class)
    west = ((pts[:, 0] // 3).astype(int) + (pts[:, 1] // 3).astype(int)) % 2 == 0

    def scene(mask):
        return {"coord": torch.from_numpy(pts[mask, :3]), "feat": torch.from_numpy(pts[mask, 3:])}

    ps = ProbeSet(x_train=[scene(west)], y_train=[lab[west]], x_test=[scene(~west)], y_test=[lab[~west]],
                  task="segmentation")
    rows = segmentation_probe({"colour": ColourHeightFeatures(), "constant": ColourHeightFeatures(True)}, "sensat", ps,
                              max_train_points=4000, max_test_points=6000)
    got = {(r["encoder"], r["levels"]): r for r in rows}
    assert got[("colour", "all")]["dim"] == 4 and got[("colour", "last")]["dim"] == 3
    constant = got[("constant", "all")]["linear_miou"]
    assert got[("colour", "all")]["linear_miou"] > constant + 0.05
    assert got[("colour", "all")]["knn_miou"] > got[("constant", "all")]["knn_miou"]
    # height separates ground from buildings and vegetation beyond what colour alone can
    assert got[("colour", "all")]["linear_miou"] > got[("colour", "last")]["linear_miou"]


def test_ratio_image_leaves_out_no_data_zeros():
    rng = np.random.default_rng(2)
    intensity = rng.exponential(1.0, size=(200, 200))
    intensity[:20] = 0.0  # a no-data border, as real SLC crops have
    stats = ratio_image_stats(intensity, np.ones_like(intensity))
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=0.03)
