"""Low-dose CT simulation from a normal-dose slice: Poisson photon counts plus electronic noise on its sinogram.

For a slice in HU with pixel size ``s`` mm (parallel-beam geometry, ``n_angles`` views over 180 degrees):

    mu = mu_water (1 + HU / 1000), clipped at 0            linear attenuation, 1/mm (mu_water = 0.0192 / mm)
    p = radon(mu) * s                                       line integrals (skimage.transform.radon)
    N = Poisson(I0 exp(-p)) + Normal(0, sigma_e^2)          detected counts: quantum + electronic noise
    p' = -ln(max(N, 1) / I0)                                 log transform (counts below 1 clamped)
    HU' = 1000 (FBP(p' / s) / mu_water - 1)                  filtered back-projection, ramp filter

``I0`` (incident photons per detector bin) is the dose knob: halving it halves the dose, and the noise std in
a uniform region grows as about 1 / sqrt(I0). The clean reference is the FBP of the noise-free sinogram ``p``
(same geometry and filter), so noisy - clean is the dose noise alone, not reconstruction error.
Common values: I0 = 1e5 ("standard clinical" in TIGRE), 2.5e4 (quarter dose), sigma_e ~ 10.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from modalities.base import DataError

__all__ = ["MU_WATER", "cached_low_dose", "hu_to_mu", "mu_to_hu", "simulate_low_dose"]

MU_WATER = 0.0192  # 1/mm at ~70 keV effective energy
SIMULATOR_VERSION = 1  # part of the cache key


def hu_to_mu(hu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    return np.clip(mu_water * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0, None)


def mu_to_hu(mu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    return 1000.0 * (np.asarray(mu, np.float64) / mu_water - 1.0)


def simulate_low_dose(hu: np.ndarray, pixel_mm: float, i0: float | Sequence[float], seed: int = 0,
                      n_angles: int = 360, sigma_e: float = 10.0, mu_water: float = MU_WATER,
                      seeds: Sequence[int] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(clean float32[H, W], [noisy float32[H, W] per I0]) in HU for a slice ``hu`` float[H, W].

    The sinogram is computed once; the doses draw their counts one after the other from ``seed``, or each from
    its own entry of ``seeds``.
    """
    from skimage.transform import iradon, radon

    hu = np.asarray(hu, np.float64)
    if hu.ndim != 2 or min(hu.shape) < 2:
        raise DataError(f"low-dose simulation: need a 2-D slice of at least 2x2 pixels, got shape {hu.shape}")
    doses = [float(i0)] if np.isscalar(i0) else [float(v) for v in i0]
    for v in doses:
        if not v > 0:
            raise DataError(f"data.dose_i0: incident photon count must be > 0, got {v}")
    if not pixel_mm > 0:
        raise DataError(f"low-dose simulation: pixel spacing must be > 0 mm, got {pixel_mm}")
    h, w = hu.shape
    size = max(h, w)
    # square canvas of air so that radon/iradon see the whole slice (circle=False keeps the corners)
    canvas = np.zeros((size, size))
    r0, c0 = (size - h) // 2, (size - w) // 2
    canvas[r0:r0 + h, c0:c0 + w] = hu_to_mu(hu, mu_water)
    theta = np.linspace(0.0, 180.0, int(n_angles), endpoint=False)
    p = radon(canvas, theta, circle=False) * pixel_mm

    def fbp(sino: np.ndarray) -> np.ndarray:
        mu = iradon(sino / pixel_mm, theta, output_size=size, circle=False, filter_name="ramp")
        return mu_to_hu(mu, mu_water)[r0:r0 + h, c0:c0 + w].astype(np.float32)

    clean = fbp(p)
    rng = np.random.default_rng(seed)
    noisy = []
    for k, v in enumerate(doses):
        if seeds is not None:
            rng = np.random.default_rng(int(seeds[k]))
        counts = rng.poisson(v * np.exp(-p)).astype(np.float64) + rng.normal(0.0, sigma_e, p.shape)
        noisy.append(fbp(-np.log(np.maximum(counts, 1.0) / v)))
    return clean, noisy


def _save_npy(path: Path, a: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, a)
    os.replace(tmp, path)


def cached_low_dose(key: str, hu_fn: Callable[[], np.ndarray], pixel_mm: float, doses: Sequence[float], cache_dir: Path, seed: int = 0,
                    n_angles: int = 360, sigma_e: float = 10.0) -> tuple[Path, dict[float, Path]]:
    """Paths of the clean and per-dose noisy slices of ``key`` (a stable slice identity), simulated once into
    ``cache_dir`` (atomic writes; ``hu_fn()`` reads the slice only when something is missing)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = hashlib.sha256(f"{SIMULATOR_VERSION}|{key}|{pixel_mm}|{n_angles}|{sigma_e}|{seed}".encode()).hexdigest()[:20]
    clean_path = cache_dir / f"{base}_clean.npy"
    noisy_paths = {float(d): cache_dir / f"{base}_i0_{float(d):.6g}.npy" for d in doses}
    missing = [d for d, p in noisy_paths.items() if not p.is_file()]
    if missing or not clean_path.is_file():
        todo = missing or [float(doses[0])]
        # one noise stream per (slice, dose): the realisation does not depend on which doses are requested
        seeds = [int(hashlib.sha256(f"{base}|{d:.6g}".encode()).hexdigest()[:8], 16) for d in todo]
        clean, noisy = simulate_low_dose(hu_fn(), pixel_mm, todo, seed, n_angles, sigma_e, seeds=seeds)
        for d, n in zip(todo, noisy):
            _save_npy(noisy_paths[d], n)
        _save_npy(clean_path, clean)
    return clean_path, noisy_paths
