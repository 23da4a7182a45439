"""The mains notch: a 50 Hz tone (and its harmonics) removed, a 10 Hz tone kept, measured by FFT."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from modalities.signals.filters import notch


def amplitude(x: np.ndarray, fs: float, freq: float) -> float:
    """Amplitude of the sinusoid at ``freq`` (the signal holds a whole number of its periods)."""
    spec = np.abs(np.fft.rfft(x, axis=-1)) * 2 / x.shape[-1]
    return float(spec[..., int(round(freq * x.shape[-1] / fs))].max())


def tone(freq: float, fs: float, seconds: float, amp: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * fs))) / fs
    return amp * np.sin(2 * np.pi * freq * t + 0.3)


@pytest.mark.parametrize("fs", [250.0, 256.0, 500.0, 1000.0])
def test_notch_removes_mains_and_keeps_alpha(fs: float) -> None:
    seconds = 20.0
    x = tone(10.0, fs, seconds, 1.0) + tone(50.0, fs, seconds, 2.0) + tone(100.0, fs, seconds, 0.5)
    y = notch(x, fs)
    inner = slice(int(2 * fs), -int(2 * fs))  # filtfilt edge transients
    keep = lambda z: z[inner]  # noqa: E731
    a10 = amplitude(keep(y), fs, 10.0) / amplitude(keep(x), fs, 10.0)
    a50 = amplitude(keep(y), fs, 50.0) / amplitude(keep(x), fs, 50.0)
    a100 = amplitude(keep(y), fs, 100.0) / amplitude(keep(x), fs, 100.0)
    assert a10 == pytest.approx(1.0, abs=0.005)  # 10 Hz passes within 0.5 %
    assert 20 * np.log10(a50) < -40  # 50 Hz down by more than 40 dB
    assert 20 * np.log10(a100) < -40  # and its harmonic
    assert y.shape == x.shape and y.dtype == x.dtype


def test_notch_is_zero_phase_and_matches_scipy_design() -> None:
    fs = 500.0
    x = np.random.default_rng(3).normal(size=(3, 5000)).astype(np.float32)
    y = notch(x, fs, freq=60.0, harmonics=False, q=25.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    b, a = signal.iirnotch(60.0, 25.0, fs=fs)
    ref = signal.filtfilt(b, a, x.astype(np.float64), axis=-1)
    np.testing.assert_allclose(y[:, 100:-100], ref[:, 100:-100], atol=1e-4)
    # Zero phase: a 10 Hz tone is not delayed.
    t10 = tone(10.0, fs, 10.0)
    out = notch(t10, fs)
    lag = np.argmax(signal.correlate(out[1000:-1000], t10[1000:-1000], mode="full")) - (t10.size - 2000 - 1)
    assert lag == 0


def test_notch_above_nyquist_and_bad_arguments() -> None:
    x = tone(10.0, 80.0, 5.0)
    np.testing.assert_array_equal(notch(x, 80.0, freq=50.0), x)  # nothing at or below 40 Hz to notch
    with pytest.raises(ValueError):
        notch(x, 80.0, freq=0.0)
    with pytest.raises(ValueError):
        notch(x, 80.0, q=-1.0)
