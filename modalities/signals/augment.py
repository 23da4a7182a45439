"""The augmentation cascade of the wearable-biosignal foundation models (Abbaspourazad et al., "Large-scale
Training of Foundation Models for Wearable Biosignals", ICLR 2024), for making views of 1-D signals.

Each step is applied independently with its own probability, in this order: cut-out, magnitude warp,
time warp, Gaussian noise, channel permutation. Smooth warps follow Um et al. ("Data Augmentation of
Wearable Sensor Data for Parkinson's Disease Monitoring", ICMI 2017): a cubic spline through random knots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

__all__ = ["BiosignalAugment"]


@dataclass(frozen=True)
class BiosignalAugment:
    """Random augmentation of one window ``float32[C, T]``; every random choice comes from the ``rng``
    argument, so the same seed gives the same output. Picklable (DataLoader workers).

    Steps (each with probability ``p_*``):

    - cut-out: zero one contiguous span of ``f * T`` samples in every channel, ``f ~ U(cutout_frac)``;
    - magnitude warp: multiply each channel by a smooth curve ``s(t)``: a cubic spline through
      ``knots + 2`` evenly spaced points (both ends included) with values ``~ N(1, magnitude_sigma)``;
    - time warp: resample every channel (one warp for all, so channels stay aligned) at ``phi(t)``, where
      ``phi`` is monotone with ``phi(0) = 0``, ``phi(T - 1) = T - 1`` and slope proportional to a spline through
      ``knots + 2`` values ``~ N(1, time_sigma)`` (clipped at 0.1 so time never stops or reverses);
      the length is unchanged;
    - Gaussian noise: add ``N(0, sigma^2)``, ``sigma ~ U(noise_sigma)``, in the units of the input (windows
      are z-scored per channel, so relative to the channel's standard deviation);
    - channel permutation: shuffle the channel order. Meaningful only where the channels are exchangeable
      (PPG's several photodiodes/wavelengths); set ``p_channel_permute=0`` for ECG, whose lead order and
      polarity carry the anatomy.

    Args: the probabilities and ranges above (defaults: the paper's PPG recipe).

    >>> augment = BiosignalAugment(p_channel_permute=0.0)
    >>> x = np.random.default_rng(0).standard_normal((4, 3840)).astype(np.float32)
    >>> y = augment(x, np.random.default_rng(1))
    >>> y.shape, y.dtype, bool(np.array_equal(y, augment(x, np.random.default_rng(1))))
    ((4, 3840), dtype('float32'), True)
    """

    p_cutout: float = 0.4
    cutout_frac: tuple[float, float] = (0.3, 0.5)
    p_magnitude_warp: float = 0.25
    magnitude_sigma: float = 0.2
    p_time_warp: float = 0.15
    time_sigma: float = 0.1
    knots: int = 5
    p_noise: float = 0.25
    noise_sigma: tuple[float, float] = (0.05, 0.1)
    p_channel_permute: float = 0.25

    def __post_init__(self) -> None:
        for name in ("p_cutout", "p_magnitude_warp", "p_time_warp", "p_noise", "p_channel_permute"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name}: must be in [0, 1], got {value}")
        for name in ("magnitude_sigma", "time_sigma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"augment.{name}: must be >= 0, got {getattr(self, name)}")
        lo, hi = self.cutout_frac
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"augment.cutout_frac: must satisfy 0 <= lo <= hi <= 1, got {self.cutout_frac}")
        lo, hi = self.noise_sigma
        if not 0.0 <= lo <= hi:
            raise ValueError(f"augment.noise_sigma: must satisfy 0 <= lo <= hi, got {self.noise_sigma}")
        if isinstance(self.knots, bool) or not isinstance(self.knots, int) or self.knots < 1:
            raise ValueError(f"augment.knots: must be a positive integer, got {self.knots!r}")
        # YAML gives lists; keep the dataclass hashable and its repr stable.
        object.__setattr__(self, "cutout_frac", tuple(float(v) for v in self.cutout_frac))
        object.__setattr__(self, "noise_sigma", tuple(float(v) for v in self.noise_sigma))

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 2:
            raise ValueError(f"BiosignalAugment expects a window [C, T], got shape {x.shape}")
        y = np.array(x, dtype=np.float32, copy=True)
        if rng.random() < self.p_cutout:
            y = self.cutout(y, rng)
        if rng.random() < self.p_magnitude_warp:
            y = self.magnitude_warp(y, rng)
        if rng.random() < self.p_time_warp:
            y = self.time_warp(y, rng)
        if rng.random() < self.p_noise:
            y = self.noise(y, rng)
        if rng.random() < self.p_channel_permute:
            y = y[rng.permutation(y.shape[0])]
        return np.ascontiguousarray(y, dtype=np.float32)

    def cutout(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Zero a contiguous span of ``round(f T)`` samples in all channels, ``f ~ U(cutout_frac)``."""
        t = x.shape[1]
        length = int(round(rng.uniform(*self.cutout_frac) * t))
        start = int(rng.integers(0, t - length + 1))
        out = x.copy()
        out[:, start : start + length] = 0.0
        return out

    def _spline(self, t: int, values: np.ndarray) -> np.ndarray:
        """Cubic spline through ``values [..., knots + 2]`` at evenly spaced points, sampled at 0..T-1."""
        nodes = np.linspace(0.0, t - 1, self.knots + 2)
        return CubicSpline(nodes, values, axis=-1)(np.arange(t, dtype=np.float64))

    def magnitude_warp(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Multiply each channel by its own smooth curve around 1."""
        c, t = x.shape
        curves = self._spline(t, rng.normal(1.0, self.magnitude_sigma, size=(c, self.knots + 2)))
        return (x * curves).astype(np.float32)

    def time_warp(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Resample all channels along one smooth monotone time map with fixed end points."""
        t = x.shape[1]
        if t < 2:
            return x.copy()
        speed = np.clip(self._spline(t, rng.normal(1.0, self.time_sigma, size=self.knots + 2)), 0.1, None)
        # phi(0) = 0, phi(T - 1) = T - 1, phi' proportional to the speed (trapezoid rule).
        phi = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]))])
        phi *= (t - 1) / phi[-1]
        grid = np.arange(t, dtype=np.float64)
        return np.stack([np.interp(phi, grid, channel) for channel in x]).astype(np.float32)

    def noise(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add white Gaussian noise of standard deviation ``sigma ~ U(noise_sigma)``."""
        sigma = rng.uniform(*self.noise_sigma)
        return (x + rng.normal(0.0, sigma, size=x.shape)).astype(np.float32)
