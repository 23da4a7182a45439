"""MERLIN inference, ours against deepdespeckling's ``MerlinDenoiser.denoise_image``, on one real SLC: where the
outputs differ and by how much, and seconds per megapixel side by side.

Outputs (published weights, default ``stripmap``; median / 99th percentile / max of ``|ours - theirs| / theirs``
per pixel of the despeckled amplitude):

- parity: ``denoise(z, stride=254, window_fn=centre_spectrum_bins)`` at ``tile=256`` against
  ``MerlinDenoiser(model, symetrise=True).denoise_image(z, 256, 254)``, and the same without centring against
  ``symetrise=False``;
- decomposition of our default (``centre_spectrum`` of the scene, then ``denoise`` with 512-pixel tiles and 64-pixel
  cut margins) against the reference: its centring alone (reference tiling), its tiling alone (scene centring on
  both sides), and the spread of the network's output over other valid tilings of the same kind (our tiling at 256
  vs 512; the reference's windows every 224 vs 254 pixels);
- quality without a clean reference: ENL (mean^2 / variance of the despeckled intensity) in the three most
  homogeneous 48 x 48 boxes of the noisy intensity, the mean of the ratio image ``|z|^2 / R_hat`` and the ratio of
  mean intensities (both 1 for a despeckler that keeps radiometry; the TerraSAR-X weights do not on ENVISAT);
- speed: each method on the whole SLC, interleaved in one process (the order rotates every round), one thread,
  median over ``--rounds``; s/MP = seconds / (H W / 1e6). ``ours, parity`` computes the reference's output (same
  windows and centring) with the sub-pixel decoder convolutions (``MerlinUNet.residual_subpixel``); ``ours, parity,
  plain network`` is the same with upsample + concatenate + 3x3 convolution, as the reference's network does.

deepdespeckling imports ``osgeo.gdal`` at module level for its GeoTIFF reader, which is never called here; when GDAL
is missing an empty ``osgeo`` module is registered so that it imports. Its tqdm bars are silenced (TQDM_DISABLE).

    OMP_NUM_THREADS=1 python benchmarks/merlin_reference_pair.py ../shared/data/sar/envisat_slc_500x500_reim.npy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.unet2d import load_published_merlin  # noqa: E402
from modalities.sar.doppler import centre_spectrum, centre_spectrum_bins  # noqa: E402
from modalities.sar.probes import homogeneous_boxes  # noqa: E402


def reference_denoiser():
    try:
        import osgeo  # noqa: F401
    except ImportError:
        sys.modules["osgeo"] = types.ModuleType("osgeo")
        sys.modules["osgeo"].gdal = None
    from deepdespeckling.merlin.merlin_denoiser import MerlinDenoiser

    return MerlinDenoiser


def difference(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    rel = np.abs(ours.astype(np.float64) - theirs) / np.abs(theirs)
    return {"median": float(np.median(rel)), "p99": float(np.quantile(rel, 0.99)), "max": float(rel.max())}


def quality(amplitude: np.ndarray, z: np.ndarray, boxes) -> dict[str, float]:
    """ENL in ``boxes``, the ratio image's mean over valid pixels, and the ratio of mean intensities."""
    intensity = amplitude.astype(np.float64) ** 2
    noisy = np.abs(z) ** 2
    valid = noisy > 0
    enls = [float(intensity[r0:r1, c0:c1].mean() ** 2 / intensity[r0:r1, c0:c1].var()) for r0, r1, c0, c1 in boxes]
    return {"enl_mean": float(np.mean(enls)), "ratio_mean": float(np.mean(noisy[valid] / intensity[valid])),
            "mean_intensity_ratio": float(noisy.mean() / intensity.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("slc", type=Path, help="SLC as float32[H, W, 2] (real, imaginary) .npy")
    ap.add_argument("--model", default="stripmap", choices=["stripmap", "spotlight", "sentinel_tops"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "merlin_reference_pair.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    slc = np.load(args.slc)
    if slc.ndim != 3 or slc.shape[-1] != 2:
        raise SystemExit(f"{args.slc}: expected float[H, W, 2] (real, imaginary), got {slc.dtype} {slc.shape}")
    slc = slc.astype(np.float32)
    z = slc[..., 0] + 1j * slc[..., 1].astype(np.float64)
    parts = np.ascontiguousarray(np.moveaxis(slc, -1, 0))
    mpix = slc.shape[0] * slc.shape[1] / 1e6
    merlin = reference_denoiser()
    ref_name = {"sentinel_tops": "Sentinel-TOPS"}.get(args.model, args.model)
    net256 = load_published_merlin(args.model, tile=256, overlap=64)
    net512 = load_published_merlin(args.model)
    plain256 = load_published_merlin(args.model, tile=256, overlap=64)
    plain256.residual_subpixel = lambda x, kernels=None: plain256.residual(x)  # the reference's network maths

    methods: dict[str, Callable[[], np.ndarray]] = {
        "reference, symetrise=True, (256, 254)":
            lambda: merlin(ref_name, symetrise=True).denoise_image(slc, 256, 254)["denoised"]["full"],
        "ours, parity (256, 254, centre_spectrum_bins)":
            lambda: net256.denoise(parts, stride=254, window_fn=centre_spectrum_bins)[0],
        "ours, parity, plain network":
            lambda: plain256.denoise(parts, stride=254, window_fn=centre_spectrum_bins)[0],
        "ours, default (scene centring, tile 512, margin 64)":
            lambda: net512.denoise(centre_spectrum(z))[0],
    }
    outputs = {name: f() for name, f in methods.items()}
    ref = outputs["reference, symetrise=True, (256, 254)"]
    ref_plain = merlin(ref_name, symetrise=False).denoise_image(slc, 256, 254)["denoised"]["full"]
    scene = centre_spectrum(z)
    ours_default = outputs["ours, default (scene centring, tile 512, margin 64)"]
    scene_ref_tiling = net256.denoise(scene, stride=254)[0]
    rows = {
        "parity: ours (256, 254, centre_spectrum_bins) vs reference symetrise=True":
            difference(outputs["ours, parity (256, 254, centre_spectrum_bins)"], ref),
        "parity: ours (256, 254, no centring) vs reference symetrise=False":
            difference(net256.denoise(parts, stride=254)[0], ref_plain),
        "parity, plain network: ours vs reference symetrise=True":
            difference(outputs["ours, parity, plain network"], ref),
        "ours default vs reference (the issue's 12.5 %)": difference(ours_default, ref),
        "centring alone: scene centring + reference tiling vs reference": difference(scene_ref_tiling, ref),
        "tiling alone: ours default vs scene centring + reference tiling":
            difference(ours_default, scene_ref_tiling),
        "spread: our tiling, tile 256 vs 512 (scene centring)": difference(net256.denoise(scene)[0], ours_default),
        "spread: reference tiling, stride 224 vs 254 (scene centring)":
            difference(net256.denoise(scene, stride=224)[0], scene_ref_tiling),
        "spread: reference, symetrise=True vs False": difference(ref_plain, ref),
    }
    boxes = homogeneous_boxes(np.abs(z) ** 2)
    qual = {"noisy": quality(np.abs(z), z, boxes), "reference": quality(ref, z, boxes),
            "ours, default": quality(ours_default, z, boxes)}

    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - t0)
    ref_s = float(np.median(times[names[0]])) / mpix
    speed = {name: {"s_per_mpix": float(np.median(t)) / mpix, "rounds_s": t,
                    "speedup_vs_reference": ref_s / (float(np.median(t)) / mpix)} for name, t in times.items()}

    print(f"{args.slc.name}: {slc.shape[0]} x {slc.shape[1]}, model {args.model}, 1 thread, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"\n{'difference (relative, per pixel)':78s} {'median':>9s} {'p99':>9s} {'max':>9s}")
    for name, d in rows.items():
        print(f"{name:78s} {d['median']:9.2e} {d['p99']:9.2e} {d['max']:9.2e}")
    print(f"\n{'quality (no clean reference)':30s} {'ENL (3 boxes)':>14s} {'ratio mean':>11s} {'<|z|^2>/<R>':>12s}")
    for name, q in qual.items():
        print(f"{name:30s} {q['enl_mean']:14.2f} {q['ratio_mean']:11.3f} {q['mean_intensity_ratio']:12.3f}")
    print(f"\n{'speed (median of ' + str(args.rounds) + ' interleaved rounds)':52s} {'s/MP':>7s} {'x ref':>6s}")
    for name, s in speed.items():
        print(f"{name:52s} {s['s_per_mpix']:7.2f} {s['speedup_vs_reference']:6.2f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "slc": args.slc.name, "shape": list(slc.shape[:2]), "model": args.model, "threads": 1,
        "rounds": args.rounds, "torch": torch.__version__, "load_average_1min": os.getloadavg()[0],
        "differences": rows, "quality": qual, "enl_boxes": [list(map(int, b)) for b in boxes], "speed": speed,
    }, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
