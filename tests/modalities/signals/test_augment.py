"""The wearable-biosignal augmentation cascade: each step does what it should, and seeds reproduce."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from modalities.signals.augment import BiosignalAugment

OFF = {"p_cutout": 0.0, "p_magnitude_warp": 0.0, "p_time_warp": 0.0, "p_noise": 0.0, "p_channel_permute": 0.0}
C, T = 4, 1000


def window(seed: int = 0) -> np.ndarray:
    t = np.linspace(0, 10, T)
    rng = np.random.default_rng(seed)
    return np.stack([np.sin(2 * np.pi * (k + 1) * t / 10) + 2.0 for k in range(C)]).astype(np.float32) + rng.normal(
        0, 0.01, (C, T)
    ).astype(np.float32)


def only(**kwargs: float) -> BiosignalAugment:
    return BiosignalAugment(**{**OFF, **kwargs})


def test_all_off_is_identity_and_does_not_modify_input() -> None:
    x = window()
    before = x.copy()
    y = only()(x, np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(x, before)
    assert y is not x


def test_cutout_zeros_one_contiguous_span_of_30_to_50_percent_in_every_channel() -> None:
    x = window()  # strictly positive, so zeros can only come from the cut-out
    augment = only(p_cutout=1.0)
    fractions = []
    for seed in range(200):
        y = augment(x, np.random.default_rng(seed))
        zero = y == 0.0
        assert (zero == zero[0]).all()  # same span in every channel
        idx = np.flatnonzero(zero[0])
        assert idx.size > 0 and np.all(np.diff(idx) == 1)  # one contiguous span
        np.testing.assert_array_equal(y[:, ~zero[0]], x[:, ~zero[0]])  # untouched elsewhere
        fractions.append(idx.size / T)
    assert 0.3 <= min(fractions) < 0.32 and 0.48 < max(fractions) <= 0.5


def test_noise_has_the_requested_standard_deviation() -> None:
    x = np.zeros((C, 20000), dtype=np.float32)
    for lo, hi in [(0.05, 0.05), (0.1, 0.1)]:
        noise = only(p_noise=1.0, noise_sigma=(lo, hi))(x, np.random.default_rng(1))
        assert abs(noise.mean()) < 0.003
        assert noise.std() == pytest.approx(lo, rel=0.02)
    stds = [only(p_noise=1.0)(x[:, :2000], np.random.default_rng(s)).std() for s in range(100)]
    assert 0.048 < min(stds) < 0.06 and 0.09 < max(stds) < 0.102


def test_magnitude_warp_scales_each_channel_smoothly_around_one() -> None:
    x = np.ones((C, T), dtype=np.float32)
    y = only(p_magnitude_warp=1.0, magnitude_sigma=0.2)(x, np.random.default_rng(2))
    assert y.shape == x.shape
    assert not np.allclose(y[0], y[1])  # one curve per channel
    # Smooth: white noise of this size would change by ~0.28 per sample; a spline over 7 knots barely moves.
    assert np.abs(np.diff(y, axis=1)).max() < 0.03
    assert np.abs(np.diff(y, n=2, axis=1)).max() < 1e-3
    assert 0.3 < y.min() and y.max() < 1.7
    flat = only(p_magnitude_warp=1.0, magnitude_sigma=0.0)(window(), np.random.default_rng(2))
    np.testing.assert_allclose(flat, window(), rtol=1e-6)


def test_time_warp_preserves_length_end_points_order_and_channel_alignment() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, T, dtype=np.float32), (C, 1))
    y = only(p_time_warp=1.0, time_sigma=0.1)(ramp, np.random.default_rng(3))
    assert y.shape == ramp.shape
    assert y[:, 0] == pytest.approx(0.0) and y[:, -1] == pytest.approx(1.0, abs=1e-6)
    assert (np.diff(y, axis=1) >= 0).all()  # monotone time map: a ramp stays a ramp
    assert np.abs(y - ramp).max() > 1e-3  # but time did move
    np.testing.assert_array_equal(y[0], y[1])  # one warp for all channels
    identity = only(p_time_warp=1.0, time_sigma=0.0)(window(), np.random.default_rng(3))
    np.testing.assert_allclose(identity, window(), atol=1e-5)


def test_channel_permutation_reorders_whole_channels() -> None:
    x = window()
    seen = set()
    for seed in range(20):
        y = only(p_channel_permute=1.0)(x, np.random.default_rng(seed))
        order = tuple(int(np.flatnonzero((x == row).all(axis=1))[0]) for row in y)
        assert sorted(order) == list(range(C))
        seen.add(order)
    assert len(seen) > 1


def test_probabilities_are_respected() -> None:
    x = window()
    augment = only(p_cutout=0.4)
    hits = sum(bool((augment(x, np.random.default_rng(s)) == 0).any()) for s in range(2000))
    assert hits / 2000 == pytest.approx(0.4, abs=0.04)


def test_same_seed_same_output_and_picklable() -> None:
    x = window()
    augment = BiosignalAugment()
    outputs = [augment(x, np.random.default_rng(s)) for s in range(10)]
    again = pickle.loads(pickle.dumps(augment))
    for s, out in enumerate(outputs):
        np.testing.assert_array_equal(again(x, np.random.default_rng(s)), out)
        assert out.dtype == np.float32 and out.shape == x.shape
    assert any(not np.array_equal(outputs[0], o) for o in outputs[1:])


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"p_cutout": 1.5}, "augment.p_cutout"), ({"cutout_frac": (0.6, 0.3)}, "augment.cutout_frac"),
     ({"noise_sigma": (-0.1, 0.1)}, "augment.noise_sigma"), ({"knots": 0}, "augment.knots"),
     ({"time_sigma": -1.0}, "augment.time_sigma")],
)
def test_bad_options_raise_one_line_value_error(kwargs: dict, option: str) -> None:
    with pytest.raises(ValueError) as info:
        BiosignalAugment(**kwargs)
    assert str(info.value).startswith(option + ":") and "\n" not in str(info.value)
