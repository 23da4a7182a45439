"""Doppler-spectrum centring: make the SLC spectrum symmetric so that real and imaginary parts are independent.

For a circular complex Gaussian speckle field ``z`` with power spectrum ``S(f)``, the real and imaginary parts
are independent fields exactly when the complex autocorrelation ``C(d) = E[z(p + d) conj z(p)]`` is real for every
lag ``d``, i.e. when ``S(f) = S(-f)`` (``C`` is the inverse Fourier transform of ``S``). A SAR spectrum is a band
centred on the Doppler centroid (azimuth) and on the range carrier residual, so in general ``Im C(d) != 0`` and
``Re z(p + d)`` correlates with ``Im z(p)``: MERLIN could then predict the imaginary part from the real one
instead of only its variance. Dalsasso et al. (IEEE TGRS 2021, Sec. III-C) therefore centre the spectrum first.

Estimation, per axis: the mean spectral magnitude profile ``p[k]`` (k over DFT bins) is symmetric about ``c``
when ``p[c + j] = p[c - j]``; its circular self-convolution ``(p * p)[l] = sum_k p[k] p[l - k]`` is then maximal
at ``l = 2c``. The peak (refined to sub-bin precision by a parabola through its neighbours) gives ``c`` up to the
two centres of symmetry of a circle, ``c`` and ``c + N/2``; the one nearer the spectrum's circular centre of mass
(the correlation Doppler estimator, Madsen 1989) is the band centre. Centring multiplies the image by the phase
ramp ``exp(-2 pi i (f_az r + f_rg c))`` (``f`` in cycles per pixel), which shifts the spectrum continuously, keeps
``|z|`` and acts pixel by pixel, so that a window of a scene is centred exactly by the same ramp
(:class:`CentredView`).

A shift cannot make a skewed band symmetric (the UAVSAR crop's azimuth spectrum is, about 10 % from one side to
the other). :func:`symmetry_gains` then gives a real, separable spectral weighting
``g(f) = sqrt((p(f) + p(-f)) / (2 p(f)))`` of the smoothed, centred profiles, which makes the expected profile
exactly ``(p(f) + p(-f)) / 2`` while keeping the mean intensity (``sum g^2 p = sum p``); the training patches are
weighted by it (:func:`symmetrise`). It is a mild linear filter (gains within 0.5..2), applied where the
real/imaginary independence matters (the MERLIN loss), not at inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CentredView", "centre_spectrum", "centre_spectrum_bins", "doppler_centroid", "real_imag_correlation", "spectrum_asymmetry",
           "spectrum_profiles", "symmetrise", "symmetry_gains"]


def spectrum_profiles(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean |FFT| along azimuth (rows, axis 0) and range (columns, axis 1), in DFT bin order.

    Shapes: complex[H, W] -> (float[H], float[W]).
    """
    z = np.asarray(z)
    mag = np.abs(np.fft.fft2(z - z.mean()))
    return mag.mean(axis=1), mag.mean(axis=0)


def _symmetry_centre(p: np.ndarray) -> float:
    """Centre of symmetry of the circular profile ``p`` in bins (in [-N/2, N/2))."""
    n = len(p)
    conv = np.real(np.fft.ifft(np.fft.fft(p) ** 2))
    k = int(np.argmax(conv))
    a, b, c = conv[(k - 1) % n], conv[k], conv[(k + 1) % n]
    denom = a - 2 * b + c
    peak = k + (0.5 * (a - c) / denom if denom < 0 else 0.0)
    candidates = np.array([peak / 2.0, peak / 2.0 + n / 2.0])
    mass = np.angle(np.sum(p * np.exp(2j * np.pi * np.arange(n) / n))) * n / (2 * np.pi)
    dist = np.abs((candidates - mass + n / 2.0) % n - n / 2.0)
    centre = float(candidates[int(np.argmin(dist))])
    return (centre + n / 2.0) % n - n / 2.0


def doppler_centroid(z: np.ndarray) -> tuple[float, float]:
    """Centres of symmetry of the azimuth and range spectra, in cycles per pixel (each in [-0.5, 0.5)).

    Shapes: complex[H, W] -> (f_az, f_rg).
    """
    p, q = spectrum_profiles(z)
    return _symmetry_centre(p) / len(p), _symmetry_centre(q) / len(q)


def _ramp(rows: np.ndarray, cols: np.ndarray, f_az: float, f_rg: float) -> np.ndarray:
    return (np.exp(-2j * np.pi * f_az * rows)[:, None] * np.exp(-2j * np.pi * f_rg * cols)[None, :]).astype(np.complex64)


def centre_spectrum(z: np.ndarray, f_az: float | None = None, f_rg: float | None = None) -> np.ndarray:
    """``z`` with its spectrum shifted so that it is symmetric about zero frequency (estimated when ``f_az`` /
    ``f_rg`` are not given). Shapes: complex[H, W] -> complex64[H, W]; ``|output| == |z|``."""
    z = np.asarray(z)
    if f_az is None or f_rg is None:
        f_az, f_rg = doppler_centroid(z)
    h, w = z.shape
    return (z * _ramp(np.arange(h), np.arange(w), f_az, f_rg)).astype(np.complex64)


def _bin_shift(p: np.ndarray) -> int:
    """Whole-bin roll that centres the ``fftshift``-ordered profile ``p`` on the zero-frequency bin ``n // 2``.

    The peak ``d`` of the circular cross-correlation of ``p`` with its reversal sits at ``2 c + 1`` for a profile
    symmetric about bin ``c`` (it is the self-convolution delayed by one bin); the two centres of the circle,
    ``(d - 1) / 2`` and ``(d - 1 - n) / 2``, give two candidate rolls, and the one that puts more of the profile
    under a centred Gaussian (standard deviation ``0.2 n``) wins, ties to the first. Halves round to even (Python's
    ``round``) and the roll goes through ``s / n * n``, as deepdespeckling computes it, so the bins are its bins.
    """
    n = len(p)
    corr = np.real(np.fft.ifft(np.fft.fft(p) * np.conj(np.fft.fft(p[::-1]))))
    d = int(np.argmax(corr))
    centred = np.arange(n) - (n - 1) / 2.0
    weight = np.exp(-0.5 * (centred / (0.2 * n)) ** 2)
    rolls = [round(-(d - 1) / 2) % n + n // 2, round(-(d - 1 - n) / 2) % n + n // 2]
    best = rolls[0] if np.sum(weight * np.roll(p, rolls[0])) >= np.sum(weight * np.roll(p, rolls[1])) else rolls[1]
    return int(best / n * n)


def centre_spectrum_bins(z: np.ndarray) -> np.ndarray:
    """``z`` with its 2-D spectrum rolled by whole DFT bins so that the mean magnitude profiles are centred: the
    per-window symmetrisation of deepdespeckling's MERLIN inference (``symetrise=True``), re-derived here so that
    :meth:`models.unet2d.MerlinUNet.denoise` can reproduce that package's output (``window_fn=``).

    A roll of ``s`` bins multiplies the window by ``exp(2 pi i s r / n)`` with ``r`` counted from the window's own
    corner, so, unlike :func:`centre_spectrum`, the result depends on where a window starts (a constant phase per
    window) and its frequency resolution is one bin (``1 / n`` cycles per pixel). The FFTs run in the input's
    precision (complex64 stays complex64, as in the reference, which builds ``re + 1j * im`` from float32 parts).
    Shapes: complex[h, w] -> complex[h, w]; ``|output| == |z|`` up to rounding.
    """
    z = np.asarray(z)
    if not np.iscomplexobj(z):
        raise ValueError(f"centre_spectrum_bins: expected a complex window, got {z.dtype} {z.shape}")
    spectrum = np.fft.fftshift(np.fft.fft2(z))
    mag = np.abs(spectrum)
    # profiles as float64 means of contiguous rows (pairwise sums), so that argmax ties break as in the reference
    s_az = _bin_shift(mag.mean(axis=1).astype(np.float64))
    s_rg = _bin_shift(np.ascontiguousarray(mag.T).mean(axis=1).astype(np.float64))
    return np.fft.ifft2(np.fft.ifftshift(np.roll(spectrum, (s_az, s_rg), axis=(0, 1))))


Gains = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (freq_az, g_az, freq_rg, g_rg), freqs ascending


def _smooth_circular(p: np.ndarray, width: int) -> np.ndarray:
    kernel = np.zeros(len(p))
    kernel[:width] = 1.0 / width
    kernel = np.roll(kernel, -(width // 2))
    return np.real(np.fft.ifft(np.fft.fft(p) * np.fft.fft(kernel)))


def symmetry_gains(z_centred: np.ndarray, smooth: int | None = None) -> Gains:
    """Spectral gains ``g(f) = sqrt((p(f) + p(-f)) / (2 p(f)))`` per axis of an already centred image, from the
    power profiles smoothed over ``smooth`` bins (default N / 32), clipped to [0.5, 2]."""
    z = np.asarray(z_centred)
    power = np.abs(np.fft.fft2(z - z.mean())) ** 2
    out = []
    for p in (power.mean(axis=1), power.mean(axis=0)):
        n = len(p)
        ps = np.maximum(_smooth_circular(p, smooth or max(3, n // 32)), 1e-12 * p.max())
        g = np.clip(np.sqrt((ps + np.roll(ps[::-1], 1)) / (2.0 * ps)), 0.5, 2.0)
        f = np.fft.fftfreq(n)
        order = np.argsort(f)
        out += [f[order], g[order]]
    return out[0], out[1], out[2], out[3]


def symmetrise(z_centred: np.ndarray, gains: Gains) -> np.ndarray:
    """Weight the spectrum of a centred image by ``gains`` (interpolated to its own frequency grid, so gains
    estimated on a whole scene apply to a patch). Shapes: complex[h, w] -> complex64[h, w]."""
    fa, ga, fr, gr = gains
    h, w = z_centred.shape
    wa = np.interp(np.fft.fftfreq(h), fa, ga, period=1.0)
    wr = np.interp(np.fft.fftfreq(w), fr, gr, period=1.0)
    return np.fft.ifft2(np.fft.fft2(z_centred) * wa[:, None] * wr[None, :]).astype(np.complex64)


def spectrum_asymmetry(z: np.ndarray) -> tuple[float, float]:
    """Relative asymmetry ``||p - p(-f)|| / ||p||`` of the azimuth and range magnitude profiles about zero
    frequency (0 for a perfectly symmetric spectrum; a band shifted by a quarter of the spectrum gives ~1)."""
    out = []
    for p in spectrum_profiles(z):
        mirrored = np.roll(p[::-1], 1)  # p[-k]
        out.append(float(np.linalg.norm(p - mirrored) / np.linalg.norm(p)))
    return out[0], out[1]


def real_imag_correlation(z: np.ndarray, max_lag: int = 2) -> float:
    """Largest |correlation| between the real part and the imaginary part shifted by up to ``max_lag`` pixels
    along either axis (lag 0 included): near 0 when the two parts are independent fields."""
    z = np.asarray(z, np.complex128)
    a, b = z.real - z.real.mean(), z.imag - z.imag.mean()
    norm = np.sqrt(np.mean(a * a) * np.mean(b * b))
    worst = 0.0
    h, w = z.shape
    for dr in range(-max_lag, max_lag + 1):
        for dc in range(-max_lag, max_lag + 1):
            if abs(dr) > 0 and abs(dc) > 0:
                continue
            sa = a[max(0, dr):h + min(0, dr), max(0, dc):w + min(0, dc)]
            sb = b[max(0, -dr):h + min(0, -dr), max(0, -dc):w + min(0, -dc)]
            worst = max(worst, abs(float(np.mean(sa * sb)) / norm))
    return worst


class CentredView:
    """A lazily Doppler-centred scene: ``view[r0:r1, c0:c1]`` is the centred complex64 window, read from
    ``scene`` (any array-like of complex[H, W] windows, e.g. :class:`~modalities.sar.readers.SLCFile`) and
    multiplied by the scene-wide phase ramp; equals ``centre_spectrum(scene, f_az, f_rg)[r0:r1, c0:c1]``."""

    def __init__(self, scene: Any, f_az: float, f_rg: float) -> None:
        self.scene, self.f_az, self.f_rg = scene, float(f_az), float(f_rg)
        self.shape = tuple(scene.shape[:2])
        self.dtype = np.dtype(np.complex64)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        z = np.asarray(self.scene[r0:r1, c0:c1])
        return (z * _ramp(np.arange(r0, r1), np.arange(c0, c1), self.f_az, self.f_rg)).astype(np.complex64)
