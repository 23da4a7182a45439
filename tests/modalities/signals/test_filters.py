"""Resampling, band-pass and normalisation, checked on synthetic tones with known spectra."""

from __future__ import annotations

import numpy as np
import pytest

from modalities.signals.filters import (
    bandpass,
    normalize,
    rational_ratio,
    remove_baseline,
    resample,
)


def tone(freq: float, fs: float, seconds: float, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * fs))) / fs
    return amp * np.sin(2 * np.pi * freq * t + phase)


def spectrum_amplitude(x: np.ndarray, fs: float, freq: float) -> float:
    """Amplitude of the sinusoid at ``freq`` (the record holds a whole number of its periods)."""
    spec = np.abs(np.fft.rfft(x)) * 2 / x.shape[-1]
    return float(spec[int(round(freq * x.shape[-1] / fs))])


@pytest.mark.parametrize("fs_in, fs_out", [(360, 500), (1000, 500), (250, 500), (125, 500), (500, 500)])
def test_resample_keeps_frequency_and_amplitude(fs_in: int, fs_out: int) -> None:
    freq, amp, seconds = 10.0, 1.7, 10.0
    x = tone(freq, fs_in, seconds, amp)
    y = resample(x, fs_in, fs_out)
    up, down = rational_ratio(fs_in, fs_out)
    assert y.shape == (int(np.ceil(x.shape[0] * up / down)),)
    assert y.shape[0] == int(seconds * fs_out)
    spec = np.abs(np.fft.rfft(y)) * 2 / y.shape[0]
    peak_hz = np.argmax(spec) * fs_out / y.shape[0]
    assert peak_hz == pytest.approx(freq, abs=fs_out / y.shape[0])
    assert spec.max() == pytest.approx(amp, rel=0.01)
    # Sample by sample, away from the ends, it is the same sine on the new grid.
    np.testing.assert_allclose(y[50:-50], tone(freq, fs_out, seconds, amp)[50:-50], atol=5e-3 * amp)  # Kaiser pass-band ripple


def test_resample_identity_and_axis() -> None:
    x = np.random.default_rng(0).normal(size=(3, 700))
    assert resample(x, 360.0, 360.0) is x
    y = resample(x.T, 360, 500, axis=0)
    np.testing.assert_allclose(y.T, resample(x, 360, 500))
    assert rational_ratio(360, 500) == (25, 18)
    assert rational_ratio(1000, 500) == (1, 2)
    assert rational_ratio(125, 500) == (4, 1)


def test_bandpass_removes_drift_and_hum_keeps_the_band() -> None:
    fs, seconds = 1000.0, 20.0
    wanted = tone(10.0, fs, seconds, 1.0)
    x = tone(0.1, fs, seconds, 3.0) + wanted + tone(200.0, fs, seconds, 0.5, phase=0.3)
    y = bandpass(x, fs, 0.5, 100.0)
    assert y.shape == x.shape
    assert spectrum_amplitude(y, fs, 0.1) < 0.01 * 3.0
    assert spectrum_amplitude(y, fs, 200.0) < 0.01 * 0.5
    assert spectrum_amplitude(y, fs, 10.0) == pytest.approx(1.0, rel=0.01)
    inner = slice(int(3 * fs), int(-3 * fs))  # sosfiltfilt's edge transient of the 0.5 Hz high-pass
    np.testing.assert_allclose(y[inner], wanted[inner], atol=0.02)  # zero phase: no shift


def test_lowpass_and_highpass() -> None:
    fs, seconds = 1000.0, 20.0
    slow, fast = tone(2.0, fs, seconds, 1.0), tone(200.0, fs, seconds, 1.0)
    low = bandpass(slow + fast, fs, None, 50.0)
    assert spectrum_amplitude(low, fs, 2.0) == pytest.approx(1.0, rel=0.01)
    assert spectrum_amplitude(low, fs, 200.0) < 0.01
    high = bandpass(slow + fast, fs, 50.0, None)
    assert spectrum_amplitude(high, fs, 200.0) == pytest.approx(1.0, rel=0.01)
    assert spectrum_amplitude(high, fs, 2.0) < 0.01
    np.testing.assert_array_equal(bandpass(slow, fs, None, None), slow)


def test_bandpass_edge_cases() -> None:
    x = np.random.default_rng(1).normal(size=(2, 400)).astype(np.float32)
    # A high cut-off at or above Nyquist is dropped: the same as a high-pass alone.
    np.testing.assert_allclose(bandpass(x, 200.0, 0.5, 100.0), bandpass(x, 200.0, 0.5, None))
    assert bandpass(x, 200.0, 0.5, 40.0).dtype == np.float32
    assert bandpass(x[:, :10], 200.0, 0.5, 40.0).shape == (2, 10)  # shorter than scipy's padding
    for low, high in [(0.0, 40.0), (40.0, 10.0), (150.0, None)]:
        with pytest.raises(ValueError):
            bandpass(x, 200.0, low, high)


def test_remove_baseline() -> None:
    fs = 360.0
    ecg_like = tone(8.0, fs, 30.0, 1.0)
    y = remove_baseline(ecg_like + 2.0 + tone(0.05, fs, 30.0, 1.5), fs)
    inner = slice(int(5 * fs), int(-5 * fs))
    np.testing.assert_allclose(y[inner], ecg_like[inner], atol=0.03)


def test_normalize_zscore_and_clip() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5000)) * np.array([[0.1], [3.0], [50.0]]) + np.array([[5.0], [-2.0], [0.0]])
    z = normalize(x, clip=None)
    np.testing.assert_allclose(z.mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(z, (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True))

    heavy = x.copy()
    heavy[1, 100] = 1e4  # an artefact far outside the clip
    clipped = normalize(heavy, clip=2.0)
    unclipped = normalize(heavy, clip=None)
    assert np.abs(clipped).max() == 2.0
    inside = np.abs(unclipped) <= 2.0
    np.testing.assert_array_equal(clipped[inside], unclipped[inside])
    np.testing.assert_array_equal(clipped[~inside], 2.0 * np.sign(unclipped[~inside]))


def test_normalize_zero_and_constant_channels() -> None:
    x = np.zeros((3, 100), dtype=np.float32)
    x[1] = 7.0
    x[2] = np.linspace(-1, 1, 100)
    z = normalize(x)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z[0], 0.0)
    np.testing.assert_array_equal(z[1], 0.0)
    assert z[2].std() == pytest.approx(1.0, rel=1e-5)
    assert np.all(np.isfinite(z))
