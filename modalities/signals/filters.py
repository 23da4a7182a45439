"""Signal conditioning shared by every biosignal modality: resampling, band-pass, notch, normalisation.

All functions take ``numpy`` arrays with time on the last axis (``[C, T]`` or ``[T]``) unless an
``axis`` is given, and return new arrays of the same shape (except :func:`resample`, which changes
the length of the time axis).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

__all__ = ["bandpass", "normalize", "notch", "rational_ratio", "remove_baseline", "resample"]

# Rates are rational in practice (360 -> 500 is 25/18); a larger denominator only means a longer
# polyphase filter for a rate error below 1e-6.
_MAX_DENOMINATOR = 1000


def rational_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``up / down`` the closest fraction to ``fs_out / fs_in`` (denominator <= 1000)."""
    if not (fs_in > 0 and fs_out > 0):
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    ratio = Fraction(fs_out) / Fraction(fs_in)
    ratio = ratio.limit_denominator(_MAX_DENOMINATOR)
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, fs_in: float, fs_out: float, axis: int = -1) -> np.ndarray:
    """Polyphase resampling from ``fs_in`` to ``fs_out`` Hz along ``axis``.

    Upsamples by ``up``, low-pass filters (Kaiser-windowed FIR, cut-off at the lower Nyquist rate)
    and downsamples by ``down``, where ``up / down`` is :func:`rational_ratio`. Output sample ``k``
    lies at time ``k * down / (up * fs_in)``; the length is ``ceil(T * up / down)``.
    Returns ``x`` unchanged when the rates are equal.
    """
    x = np.asarray(x)
    up, down = rational_ratio(fs_in, fs_out)
    if up == down:
        return x
    return signal.resample_poly(x, up, down, axis=axis, window=_antialias_fir(up, down))


@lru_cache(maxsize=64)
def _antialias_fir(up: int, down: int) -> np.ndarray:
    # resample_poly's own default design (Kaiser, beta 5, 10 zero crossings per side), made once
    # per rate pair instead of once per call: windows are short, so the design would dominate.
    max_rate = max(up, down)
    h = signal.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h.setflags(write=False)
    return h


@lru_cache(maxsize=64)
def _butter_sos(order: int, cutoff: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    sos = signal.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    sos.setflags(write=False)
    return sos


def _sosfiltfilt(sos: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    n = x.shape[axis]
    # scipy's default odd-extension length; shortened for signals shorter than it.
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    return signal.sosfiltfilt(sos, x, axis=axis, padlen=min(padlen, max(n - 1, 0)))


def bandpass(
    x: np.ndarray,
    fs: float,
    low: float | None,
    high: float | None,
    order: int = 4,
    axis: int = -1,
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``sosfiltfilt``, so the effective order is ``2 * order``).

    ``low=None`` gives a low-pass at ``high``, ``high=None`` a high-pass at ``low``; a ``high`` at or
    above Nyquist (``fs / 2``) is dropped, since the signal holds nothing above it. With neither
    cut-off left, ``x`` is returned unchanged (as float).
    """
    x = np.asarray(x)
    nyquist = fs / 2.0
    if high is not None and high >= nyquist:
        high = None
    if low is not None and low <= 0:
        raise ValueError(f"band-pass low cut-off must be positive, got {low}")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"band-pass low cut-off {low} Hz must be below high cut-off {high} Hz")
    if low is not None and low >= nyquist:
        raise ValueError(f"band-pass low cut-off {low} Hz is at or above Nyquist ({nyquist} Hz)")
    if low is None and high is None:
        return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    if low is None:
        sos = _butter_sos(order, float(high), "lowpass", float(fs))
    elif high is None:
        sos = _butter_sos(order, float(low), "highpass", float(fs))
    else:
        sos = _butter_sos(order, (float(low), float(high)), "bandpass", float(fs))
    y = _sosfiltfilt(sos.copy(), x, axis)  # scipy's Cython kernel wants a writable array
    return y.astype(x.dtype, copy=False) if np.issubdtype(x.dtype, np.floating) else y


@lru_cache(maxsize=64)
def _notch_sos(freqs: tuple[float, ...], q: float, fs: float) -> np.ndarray:
    sos = np.concatenate([signal.tf2sos(*signal.iirnotch(f, q, fs=fs)) for f in freqs])
    sos.setflags(write=False)
    return sos


def notch(
    x: np.ndarray,
    fs: float,
    freq: float = 50.0,
    harmonics: bool = True,
    q: float = 30.0,
    axis: int = -1,
) -> np.ndarray:
    """Zero-phase IIR notch at mains ``freq`` (and its harmonics below Nyquist).

    Each notch is a second-order IIR (``scipy.signal.iirnotch``) with quality ``q``, i.e. a -3 dB
    width of ``f / q`` Hz around ``f`` (1.7 Hz at 50 Hz for ``q=30``), applied forward and backward
    (``sosfiltfilt``), so the phase is zero and the attenuation at ``f`` is squared. With
    ``harmonics``, ``2 f, 3 f, ...`` below ``fs / 2`` are notched too (mains interference is not a
    pure sine). Use ``freq=60.0`` where the mains is 60 Hz.

    Args:
        x: float[..., T] (time on ``axis``).
        fs: sampling rate in Hz.
        freq: mains frequency in Hz.
        harmonics: also notch integer multiples of ``freq`` below Nyquist.
        q: quality factor of each notch (centre frequency / bandwidth).
        axis: time axis.

    Returns:
        an array of ``x``'s shape (and float dtype; integers become float64). ``x`` is returned
        unchanged (as float) when ``freq`` is at or above Nyquist.

    Raises:
        ValueError: a non-positive ``freq`` or ``q``.
    """
    x = np.asarray(x)
    if not (freq > 0 and q > 0):
        raise ValueError(f"notch needs a positive frequency and quality, got freq={freq}, q={q}")
    nyquist = fs / 2.0
    count = int(np.ceil(nyquist / freq)) - 1 if harmonics else int(freq < nyquist)
    freqs = tuple(float(freq * k) for k in range(1, count + 1) if freq * k < nyquist)
    if not freqs:
        return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    y = _sosfiltfilt(_notch_sos(freqs, float(q), float(fs)).copy(), x, axis)
    return y.astype(x.dtype, copy=False) if np.issubdtype(x.dtype, np.floating) else y


def remove_baseline(x: np.ndarray, fs: float, cutoff: float = 0.5, axis: int = -1) -> np.ndarray:
    """Remove baseline wander with a zero-phase Butterworth high-pass at ``cutoff`` Hz."""
    return bandpass(x, fs, cutoff, None, axis=axis)


def normalize(x: np.ndarray, clip: float | None = 5.0, eps: float = 1e-6) -> np.ndarray:
    """Per-channel z-score over time (last axis), then clip to ``[-clip, clip]``.

    ``y = (x - mean_t(x)) / max(std_t(x), eps)``: a constant (e.g. all-zero, missing) channel maps
    to zeros instead of dividing by zero. ``clip=None`` disables clipping.
    """
    x = np.asarray(x)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x64 = x.astype(np.float64, copy=False)
    mean = x64.mean(axis=-1, keepdims=True)
    std = x64.std(axis=-1, keepdims=True)
    y = (x64 - mean) / np.maximum(std, eps)
    if clip is not None:
        np.clip(y, -clip, clip, out=y)
    return y.astype(out_dtype, copy=False)
