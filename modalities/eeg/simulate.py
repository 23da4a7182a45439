"""The embedded default EEG corpus: simulated motor-imagery runs written as EDF+ files with event annotations.

Model. Scalp potentials are a linear mixture of a few cortical sources plus background activity (the forward
model of EEG is linear and instantaneous; Nunez & Srinivasan 2006). Each electrode ``e`` at a 2-D azimuthal
scalp position ``p_e`` (unit radius at the T7-T8 / Fpz-Oz circle) receives

    v_e(t) = sum_s g_s exp(-|p_e - q_s|^2 / (2 sigma^2)) a_s(t)          (sources s at q_s, volume conduction)
           + b_e(t)                                                      (1/f background, spatially smoothed)
           + r(t) + m(t) + n_e(t)                                        (reference, mains, amplifier noise)

- ``b``: aperiodic background, power spectral density ``~ 1 / f^chi`` with the exponent ``chi`` of the
  subject (1.4-2.0; the aperiodic exponent of resting EEG, Donoghue et al. 2020), drawn as pink noise at 24
  points on the scalp and mixed with the same Gaussian kernel as the sources (nearby electrodes correlate),
  about 8-12 uV RMS;
- occipital alpha (source near Oz): narrow-band (+-1 Hz) noise at the subject's individual alpha frequency
  8.5-11.5 Hz, 8-14 uV RMS at O1/O2;
- two sensorimotor sources near C3 and C4: mu (the alpha frequency + 0.5-1.5 Hz, 4-7 uV) and beta (18-24 Hz,
  2-3.5 uV) rhythms;
- event-related desynchronisation (ERD; Pfurtscheller & Lopes da Silva 1999): during imagery of a left (``T1``)
  or right (``T2``) hand movement the mu and beta power of the *contralateral* sensorimotor source drops by
  50-70 % (amplitude x sqrt(1 - d)) and of the ipsilateral one by 10-20 %, with 0.5 s raised-cosine ramps
  starting 0.3 s after the cue; rest (``T0``) leaves both untouched;
- ``r``: activity at the reference electrode (pink, 4 uV), common to every channel and removed by an average
  re-reference; ``m``: 50 Hz mains at 1-3 uV; ``n``: white amplifier noise at 0.5 uV; plus a 0.1-0.3 Hz drift.

A run alternates rest (4 +- 0.5 s, ``T0``) and imagery (4 s, ``T1`` or ``T2`` at random), like the PhysioNet
EEG Motor Movement/Imagery runs (Schalk et al. 2004), and every event is an EDF+ annotation (onset, duration,
label). Channels are 10-20 / 10-10 positions covering both motor strips (:data:`CHANNELS`), in uV, written at
256 Hz with pyedflib so the corpus goes through the same EDF reader as real recordings. All random draws come
from ``(seed, subject index)``, so subject ``i`` does not depend on how many are simulated.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from modalities.base import CORPUS_FILE, build_corpus

__all__ = ["CHANNELS", "CORPUS_FILE", "POSITIONS", "simulate_corpus", "simulate_subject", "subject_parameters"]

_GENERATOR = "modalities.eeg.simulate/motor-imagery-mixing"
_VERSION = 1
_RECORD = "eegsim_{:04d}.edf"
_RECORD_PATTERN = re.compile(r"eegsim_\d{4}\.edf")

# Azimuthal-equidistant scalp positions (x to the right ear, y to the nose; T7/T8, Fpz and Oz on the unit circle).
POSITIONS: dict[str, tuple[float, float]] = {
    "Fp1": (-0.31, 0.95), "Fp2": (0.31, 0.95),
    "F7": (-0.81, 0.59), "F3": (-0.41, 0.51), "Fz": (0.0, 0.5), "F4": (0.41, 0.51), "F8": (0.81, 0.59),
    "FC3": (-0.46, 0.25), "FC4": (0.46, 0.25),
    "T7": (-1.0, 0.0), "C3": (-0.5, 0.0), "Cz": (0.0, 0.0), "C4": (0.5, 0.0), "T8": (1.0, 0.0),
    "CP3": (-0.46, -0.25), "CP4": (0.46, -0.25),
    "P7": (-0.81, -0.59), "P3": (-0.41, -0.51), "Pz": (0.0, -0.5), "P4": (0.41, -0.51), "P8": (0.81, -0.59),
    "O1": (-0.31, -0.95), "O2": (0.31, -0.95),
}
CHANNELS: tuple[str, ...] = tuple(POSITIONS)

_SIGMA = 0.3  # spatial spread of a source on the scalp (volume conduction), in scalp radii
_MOTOR_LEFT, _MOTOR_RIGHT, _OCCIPITAL = (-0.5, 0.05), (0.5, 0.05), (0.0, -0.95)
_ERD_DELAY_S, _ERD_RAMP_S = 0.3, 0.5
_PHYSICAL_RANGE_UV = 800.0


def subject_parameters(seed: int, index: int) -> dict[str, Any]:
    """The drawn parameters of subject ``index`` (a function of ``(seed, index)`` only)."""
    rng = np.random.default_rng([int(seed), int(index), 0xEE6])
    alpha = float(rng.uniform(8.5, 11.5))
    return {
        "seed": int(seed),
        "index": int(index),
        "aperiodic_exponent": float(rng.uniform(1.4, 2.0)),
        "background_uv": float(rng.uniform(8.0, 12.0)),
        "alpha_hz": alpha,
        "alpha_uv": float(rng.uniform(8.0, 14.0)),
        "mu_hz": alpha + float(rng.uniform(0.5, 1.5)),
        "mu_uv": float(rng.uniform(4.0, 7.0)),
        "beta_hz": float(rng.uniform(18.0, 24.0)),
        "beta_uv": float(rng.uniform(2.0, 3.5)),
        "erd_contra": float(rng.uniform(0.5, 0.7)),
        "erd_ipsi": float(rng.uniform(0.1, 0.2)),
        "mains_hz": 50.0,
        "mains_uv": float(rng.uniform(1.0, 3.0)),
        "reference_uv": 4.0,
        "noise_uv": 0.5,
        "drift_hz": float(rng.uniform(0.1, 0.3)),
        "drift_uv": float(rng.uniform(2.0, 6.0)),
        "position_jitter": 0.03,
    }


def _pink(rng: np.random.Generator, shape: tuple[int, ...], fs: float, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1/f^exponent above 0.5 Hz (flat below), unit RMS."""
    n = shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec = rng.standard_normal(shape[:-1] + (len(f),)) + 1j * rng.standard_normal(shape[:-1] + (len(f),))
    spec *= np.maximum(f, 0.5) ** (-exponent / 2.0)
    spec[..., 0] = 0.0
    x = np.fft.irfft(spec, n=n)
    return x / x.std(axis=-1, keepdims=True)


def _narrowband(rng: np.random.Generator, n: int, fs: float, centre: float, half_width: float = 1.0) -> np.ndarray:
    """Unit-RMS band-limited noise around ``centre`` Hz: a waxing and waning rhythm, as EEG rhythms are."""
    sos = signal.butter(2, (centre - half_width, centre + half_width), btype="bandpass", fs=fs, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal(n + int(4 * fs)))[int(2 * fs):int(2 * fs) + n]
    return x / x.std()


def _schedule(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float, str]]:
    """Alternating rest and imagery events ``(onset_s, duration_s, label)`` filling the run."""
    events, t, rest = [], 0.0, True
    while True:
        d = float(rng.uniform(3.5, 4.5)) if rest else 4.0
        if t + d > duration_s:
            break
        events.append((round(t, 3), round(d, 3), "T0" if rest else str(rng.choice(["T1", "T2"]))))
        t += d
        rest = not rest
    return events


def _gain(positions: np.ndarray, source: tuple[float, float]) -> np.ndarray:
    d2 = ((positions - np.asarray(source)) ** 2).sum(-1)
    return np.exp(-d2 / (2 * _SIGMA**2))


def _erd_envelope(events: list[tuple[float, float, str]], n: int, fs: float, drop: dict[str, float]) -> np.ndarray:
    """Amplitude factor over time: sqrt(1 - drop[label]) inside each event, raised-cosine ramps in and out."""
    t = np.arange(n) / fs
    power = np.ones(n)
    for onset, dur, label in events:
        d = drop.get(label, 0.0)
        if d <= 0:
            continue
        start, stop = onset + _ERD_DELAY_S, onset + dur
        rise = np.clip((t - start) / _ERD_RAMP_S, 0.0, 1.0)
        fall = np.clip((stop + _ERD_RAMP_S - t) / _ERD_RAMP_S, 0.0, 1.0)
        w = 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))
        power = np.minimum(power, 1.0 - d * w)
    return np.sqrt(power)


def simulate_subject(params: dict[str, Any], duration_s: float, fs: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One run: ``(x float64[len(CHANNELS), n] in uV, events [(onset_s, duration_s, label)])``."""
    rng = np.random.default_rng([params["seed"], params["index"], 0x51])
    n = int(round(duration_s * fs))
    pos = np.array([POSITIONS[c] for c in CHANNELS]) + rng.normal(0, params["position_jitter"], (len(CHANNELS), 2))
    events = _schedule(rng, duration_s)

    # 1/f background: pink sources on a ring of 24 scalp points, mixed like cortical sources.
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    grid = np.concatenate([np.stack([0.85 * np.cos(angles), 0.85 * np.sin(angles)], 1),
                           np.stack([0.4 * np.cos(angles[::2]), 0.4 * np.sin(angles[::2])], 1)])
    mix = np.stack([_gain(pos, tuple(g)) for g in grid], 1)  # [E, 24]
    background = mix @ _pink(rng, (len(grid), n), fs, params["aperiodic_exponent"])
    background *= params["background_uv"] / background.std(axis=1, keepdims=True)

    x = background
    x += np.outer(_gain(pos, _OCCIPITAL), params["alpha_uv"] * _narrowband(rng, n, fs, params["alpha_hz"]))
    # Contralateral control: the right hemisphere (C4) moves the left hand (T1), the left (C3) the right (T2).
    for source, contra, ipsi in ((_MOTOR_LEFT, "T2", "T1"), (_MOTOR_RIGHT, "T1", "T2")):
        envelope = _erd_envelope(events, n, fs, {contra: params["erd_contra"], ipsi: params["erd_ipsi"]})
        rhythm = (params["mu_uv"] * _narrowband(rng, n, fs, params["mu_hz"])
                  + params["beta_uv"] * _narrowband(rng, n, fs, params["beta_hz"], 2.0))
        x += np.outer(_gain(pos, source), envelope * rhythm)
    t = np.arange(n) / fs
    x += params["reference_uv"] * _pink(rng, (n,), fs, 1.0)  # the reference electrode's own activity
    x += params["mains_uv"] * np.sin(2 * np.pi * params["mains_hz"] * t + rng.uniform(0, 2 * np.pi))
    x += params["drift_uv"] * np.sin(2 * np.pi * params["drift_hz"] * t + rng.uniform(0, 2 * np.pi, (len(CHANNELS), 1)))
    x += params["noise_uv"] * rng.standard_normal(x.shape)
    return x, events


def _corpus_spec(n_subjects: int, duration_s: float, fs: int, seed: int) -> dict[str, Any]:
    return {"generator": _GENERATOR, "version": _VERSION, "n_subjects": int(n_subjects),
            "duration_s": float(duration_s), "fs": int(fs), "seed": int(seed)}


def write_edf(path: Path, x_uv: np.ndarray, fs: int, channels: tuple[str, ...] | list[str],
              events: list[tuple[float, float, str]]) -> None:
    """Write ``x_uv`` float[C, n] as an EDF+ file of EEG channels in uV with the events as annotations
    (written to a temporary file and renamed, so a reader never sees half a file)."""
    import pyedflib

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        writer = pyedflib.EdfWriter(tmp, len(channels), file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            writer.setSignalHeaders([
                {"label": f"EEG {c}", "dimension": "uV", "sample_frequency": fs,
                 "physical_max": _PHYSICAL_RANGE_UV, "physical_min": -_PHYSICAL_RANGE_UV,
                 "digital_max": 32767, "digital_min": -32768, "transducer": "simulated electrode",
                 "prefilter": "none"} for c in channels
            ])
            writer.writeSamples([np.ascontiguousarray(np.clip(ch, -_PHYSICAL_RANGE_UV, _PHYSICAL_RANGE_UV))
                                 for ch in x_uv])
            for onset, dur, label in events:
                writer.writeAnnotation(onset, dur, label)
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def simulate_corpus(out_dir: Path, n_subjects: int = 12, duration_s: float = 120.0, fs: int = 256,
                    seed: int = 0) -> Path:
    """Write ``n_subjects`` simulated motor-imagery runs as EDF+ files ``eegsim_NNNN.edf`` into ``out_dir``.

    ``corpus.json`` holds the request and every subject's parameters and events. Idempotent: nothing is simulated
    when ``corpus.json`` matches the request and every file exists; otherwise only ``eegsim_NNNN.edf`` files and
    ``corpus.json`` are replaced. About 0.1 s of CPU per 120 s subject.

    >>> root = simulate_corpus(Path("/tmp/eegsim"), n_subjects=2, duration_s=30)  # doctest: +SKIP
    """
    if n_subjects < 1 or duration_s < 10 or int(fs) != fs or fs < 128:
        raise ValueError(f"simulate_corpus: need n_subjects >= 1, duration_s >= 10 and an integer fs >= 128 Hz, "
                         f"got {n_subjects}, {duration_s}, {fs}")
    fs = int(fs)
    out_dir = Path(out_dir).expanduser()

    def build() -> dict[str, Any]:
        subjects = []
        for i in range(n_subjects):
            params = subject_parameters(seed, i)
            x, events = simulate_subject(params, duration_s, fs)
            write_edf(out_dir / _RECORD.format(i), x, fs, CHANNELS, events)
            subjects.append({"file": _RECORD.format(i), **params, "events": [list(e) for e in events]})
        return {"channels": list(CHANNELS), "units": "uV", "subjects": subjects}

    files = [_RECORD.format(i) for i in range(n_subjects)]
    return build_corpus(out_dir, _corpus_spec(n_subjects, duration_s, fs, seed), files, _RECORD_PATTERN, build)
