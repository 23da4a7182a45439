"""Simulated single-look complex SAR images: correlated complex speckle over clean scikit-image pictures.

Model (Goodman 1976; the SAR imaging model of Dalsasso et al., IEEE TGRS 2021, Sec. II). A scene of reflectivity
``R(q) >= 0`` scatters a circular complex Gaussian field ``sqrt(R(q)) w(q)``, ``w = (n1 + i n2) / sqrt(2)`` white
with ``E|w|^2 = 1``; the sensor sees it through its impulse response ``h``::

    z = h * (sqrt(R) w),         E|z(p)|^2 = sum_q |h(p - q)|^2 R(q) = (|h|^2 * R)(p)

``h`` is given by its transfer function, separable in azimuth (rows) and range (columns): each axis passes a band
of ``bandwidth`` (fraction of the sampling rate; SAR images are oversampled by 1.05-1.3) weighted by a generalised
Hamming window ``alpha + (1 - alpha) cos(2 pi u)``, ``alpha = 0.75`` (the side-lobe weighting SAR processors apply;
Sentinel-1's processor uses 0.75), the azimuth band centred on a Doppler centroid ``f_dc`` cycles per pixel. ``|H|`` is scaled so that ``sum |h|^2 = 1``, so the expected intensity is the
reflectivity blurred by the tiny point-spread function ``|h|^2``: that expected intensity is the clean reference
(``_clean.npy``), exact rather than approximate. The speckle of ``z`` is spatially correlated (lag-1 correlation
of the complex field 0.40 in azimuth and 0.36 in range at the defaults, as in real SLCs: 0.24 / 0.21 on the
ENVISAT crop and 0.31 / 0.27 on the UAVSAR crop of the test data, benchmarks/sar_despeckling.py) and its
spectrum is off-centre until Doppler centring.

Clean scenes are the pictures that ship in scikit-image (``skimage.data``), converted to grey and to a reflectivity
``R = (A0 (0.04 + 0.96 g))^2`` with ``g`` in [0, 1] and ``A0 = 100`` (amplitudes of tens to hundreds, like
calibrated SLC digital numbers). The embedded default corpus (:func:`simulate_corpus`) writes each as complex64
``<name>.npy`` plus ``<name>_clean.npy`` (float32 expected intensity).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modalities.base import build_corpus

__all__ = ["BANDWIDTH", "CLEAN_IMAGES", "DOPPLER", "HAMMING_ALPHA", "TEST_IMAGES", "clean_reflectivity", "simulate_corpus", "simulate_slc", "transfer_function"]

_GENERATOR = "modalities.sar.simulate/hamming-band-speckle"
_VERSION = 2
# skimage.data pictures that ship inside the package (no download); camera and coins are held out for the probe.
CLEAN_IMAGES: tuple[str, ...] = ("astronaut", "brick", "chelsea", "clock", "coffee", "grass", "gravel",
                                 "immunohistochemistry", "moon", "page", "rocket", "text")
TEST_IMAGES: tuple[str, ...] = ("camera", "coins")
AMPLITUDE_SCALE = 100.0
_FILE_PATTERN = re.compile(r"[a-z_]+(_clean)?\.npy")


def clean_reflectivity(name: str, amplitude_scale: float = AMPLITUDE_SCALE) -> np.ndarray:
    """Reflectivity float64[H, W] of the scikit-image picture ``name``: ``(A0 (0.04 + 0.96 g))^2``."""
    import skimage.data
    from skimage.color import rgb2gray

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    g = np.asarray(img, np.float64)
    g = g / 255.0 if g.max() > 1.0 else g
    return (amplitude_scale * (0.04 + 0.96 * g)) ** 2


HAMMING_ALPHA = 0.75
BANDWIDTH = (0.9, 0.95)
DOPPLER = (0.15, 0.02)


def _band(n: int, bandwidth: float, centre: float, alpha: float = HAMMING_ALPHA) -> np.ndarray:
    """Hamming-weighted band of ``bandwidth`` (fraction of the sampling rate) centred on ``centre`` cycles/pixel,
    sampled on the DFT grid of ``n`` points."""
    f = np.fft.fftfreq(n)
    u = ((f - centre + 0.5) % 1.0 - 0.5) / bandwidth  # offset from the band centre, in bandwidths (circular)
    return np.where(np.abs(u) <= 0.5, alpha + (1.0 - alpha) * np.cos(2 * np.pi * u), 0.0)


def transfer_function(shape: tuple[int, int], bandwidth: tuple[float, float] = BANDWIDTH,
                      doppler: tuple[float, float] = DOPPLER) -> np.ndarray:
    """Separable sensor transfer function H[H, W] on the DFT grid, normalised so that ``mean |H|^2 = 1``
    (i.e. ``sum |h|^2 = 1``)."""
    h = _band(shape[0], bandwidth[0], doppler[0])[:, None] * _band(shape[1], bandwidth[1], doppler[1])[None, :]
    return h / np.sqrt(np.mean(np.abs(h) ** 2))


def simulate_slc(reflectivity: np.ndarray, seed: int, bandwidth: tuple[float, float] = BANDWIDTH,
                 doppler: tuple[float, float] = DOPPLER) -> tuple[np.ndarray, np.ndarray]:
    """One single-look complex image of ``reflectivity`` and its expected intensity ``(|h|^2 * R)``.

    Shapes: float[H, W] -> (complex64[H, W], float32[H, W]). Convolutions are circular (FFT).
    """
    r = np.asarray(reflectivity, np.float64)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(r.shape) + 1j * rng.standard_normal(r.shape)) / np.sqrt(2.0)
    big_h = transfer_function(r.shape, bandwidth, doppler)
    z = np.fft.ifft2(np.fft.fft2(np.sqrt(r) * w) * big_h)
    psf = np.abs(np.fft.ifft2(big_h)) ** 2  # |h|^2, sums to 1
    expected = np.real(np.fft.ifft2(np.fft.fft2(r) * np.fft.fft2(psf)))
    return z.astype(np.complex64), np.maximum(expected, 0.0).astype(np.float32)


def simulate_corpus(out_dir: str | Path, names: tuple[str, ...] = CLEAN_IMAGES, seed: int = 0,
                    bandwidth: tuple[float, float] = BANDWIDTH, doppler: tuple[float, float] = DOPPLER) -> Path:
    """The embedded default: ``<name>.npy`` (complex64 SLC) and ``<name>_clean.npy`` (float32 expected intensity)
    for each picture, built once into ``out_dir`` (see :func:`modalities.base.build_corpus`)."""
    out_dir = Path(out_dir)
    spec = {"generator": _GENERATOR, "version": _VERSION, "hamming_alpha": HAMMING_ALPHA, "names": list(names), "seed": int(seed),
            "bandwidth": list(bandwidth), "doppler": list(doppler), "amplitude_scale": AMPLITUDE_SCALE}
    files = [f"{n}.npy" for n in names] + [f"{n}_clean.npy" for n in names]

    def build() -> dict[str, Any]:
        shapes = {}
        for i, name in enumerate(names):
            z, clean = simulate_slc(clean_reflectivity(name), seed=seed * 1000 + i, bandwidth=bandwidth, doppler=doppler)
            np.save(out_dir / f"{name}.npy", z)
            np.save(out_dir / f"{name}_clean.npy", clean)
            shapes[name] = list(z.shape)
        return {"shapes": shapes}

    return build_corpus(out_dir, spec, files, _FILE_PATTERN, build)
