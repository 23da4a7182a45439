"""The description of one recording (:class:`RecordInfo`) and its frames (:func:`frame_layout`).

A *frame* is the shortest stretch holding a whole number of samples of every channel (as in WFDB):
``fs`` is the greatest common divisor of the channel rates and channel ``c`` has
``samples_per_frame[c] = rate_c / fs`` samples per frame, so a channel's own rate is
``fs * samples_per_frame``. Single-rate files have ``fs`` = their rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from modalities.base import DataError

__all__ = ["RecordInfo", "frame_layout"]


@dataclass(frozen=True)
class RecordInfo:
    """What the header of one recording says; enough to plan window reads without opening data.

    Args:
        path: absolute record path (WFDB: without extension, as ``wfdb`` expects it).
        name: record name from the header (``"100"``).
        fs: frame (base) frequency in Hz.
        n_frames: record length in frames.
        channels: channel (signal) names in file order.
        units: physical unit of each channel.
        samples_per_frame: samples of each channel per frame (1 for ordinary channels).
        n_segments: 1 for single-segment records, else the number of segments (layout included).
        comments: header comment lines without the leading ``#`` (other formats: what the reader
            inferred, e.g. the evidence for a CSV rate).
        format: ``"wfdb"``, ``"edf"``, ``"bdf"``, ``"fif"``, ``"set"``, ``"csv"`` or ``"npz"``; ``path`` keeps its
            suffix for every format but WFDB.
        channel_types: per channel one of ``"ecg"``, ``"ppg"``, ``"eeg"``, ``"eog"``, ``"emg"``,
            ``"resp"``, ``"stim"``, ``"misc"``: from the file where it says (FIF), else inferred from
            names (:func:`~modalities.signals.channels.infer_channel_type`).
    """

    path: str
    name: str
    fs: float
    n_frames: int
    channels: tuple[str, ...]
    units: tuple[str, ...]
    samples_per_frame: tuple[int, ...]
    n_segments: int
    comments: tuple[str, ...]
    format: str = "wfdb"
    channel_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Every reader checks its format's rate; this is the last line of defence (a hand-built or stale record).
        try:
            rate_ok = math.isfinite(float(self.fs)) and float(self.fs) > 0
        except (TypeError, ValueError):
            rate_ok = False
        if not rate_ok:
            raise DataError(f"{self.path}: sampling frequency {self.fs!r} is not a positive number")
        if self.n_frames < 0:
            raise DataError(f"{self.path}: record length {self.n_frames} frames is negative")

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fs

    def channel_fs(self, channel: str) -> float:
        """Sampling rate of ``channel`` in Hz: ``fs * samples_per_frame``."""
        return self.fs * self.samples_per_frame[self._channel_index(channel)]

    def _channel_index(self, channel: str) -> int:
        try:
            return self.channels.index(channel)
        except ValueError:
            raise DataError(
                f"{self.path}: no channel {channel!r}; the record has {', '.join(self.channels)}"
            ) from None


def _as_fraction(rate: float) -> Fraction:
    return Fraction(rate).limit_denominator(1_000_000)


def frame_layout(rates: Sequence[float | Fraction]) -> tuple[float, tuple[int, ...]]:
    """``(fs, samples_per_frame)``: the frame rate (GCD of the channel rates) and each channel's
    samples per frame. ``frame_layout([100, 1]) == (1.0, (100, 1))``; ``([128] * 3) -> (128.0, (1, 1, 1))``."""
    fracs = [r if isinstance(r, Fraction) else _as_fraction(float(r)) for r in rates]
    if not fracs or any(f <= 0 for f in fracs):
        raise ValueError(f"rates must be positive, got {list(rates)}")
    num, den = fracs[0].numerator, fracs[0].denominator
    for f in fracs[1:]:
        num = math.gcd(num * f.denominator, f.numerator * den)
        den = den * f.denominator
        g = math.gcd(num, den)
        num, den = num // g, den // g
    fs = Fraction(num, den)
    return float(fs), tuple(int(f / fs) for f in fracs)
