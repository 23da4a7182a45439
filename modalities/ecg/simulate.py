"""The embedded default ECG corpus: 12-lead ECGs simulated with the ECGSYN model, written as WFDB.

Model. ECGSYN (McSharry, Clifford, Tarassenko & Smith 2003, "A dynamical model for generating
synthetic electrocardiogram signals", IEEE TBME 50(3)) moves a point on a limit cycle whose angular
speed follows an RR tachogram with a bimodal (Mayer wave ~0.1 Hz, respiratory ~0.25 Hz) spectrum,
so the heart rate has a set mean, standard deviation and LF/HF ratio; each wave
``k in (P, Q, R, S, T)`` is a Gaussian event at phase ``theta_k`` with width ``b_k``. We run
neurokit2's implementation (``nk.ecg_simulate(method="ecgsyn")``) three times with the same
random state, so all runs share one tachogram and one phase trajectory: each of Q, R and S runs
with the P wave switched on with the opposite sign (so each wave is the part of its run above or
below the baseline, and the solver reaches the narrow wave with small steps), T runs alone. This
gives the unit-height train ``psi_k(t)`` of every wave.

Leads. The heart is a dipole whose direction differs per wave (Sameni et al. 2007, "Multichannel
ECG and noise modeling based on the dynamical model"): ``d(t) = sum_k m_k u_k psi_k(t)`` in Frank
coordinates (X to the left, Y to the feet, Z to the back), with amplitude ``m_k`` (mV) and unit
direction ``u_k``. The 8 independent leads come from the Dower transform ``[V1..V6, I, II] =
D d(t)`` (Dower, Machado & Osborne 1980) and the other four from Einthoven's and Goldberger's laws
(``III = II - I``, ``aVR = -(I + II) / 2``, ``aVL = I - II / 2``, ``aVF = II - I / 2``), so the
limb leads of every sample are exactly consistent, as they are in a real recording.

Per simulated subject (all from one seed; subject ``i`` does not depend on ``n_subjects``):
mean heart rate 50-110 bpm, heart-rate SD 1-4 bpm, LF/HF ratio 0.5-2; wave timing and widths
(PR, QRS, QT variation); wave amplitudes; per-wave direction jitter; a rotation of the whole heart
(electrical axis, +-30 degrees in the frontal plane, +-20 degrees about the long axis); a body
gain and per-chest-electrode gains. Noise is generated per electrode (RA, LA, LL, V1..V6) and
mapped to leads with the same lead equations, so it also obeys Einthoven's law: baseline wander
(respiration plus slow drift), EMG-like band-limited bursts, mains interference (50 or 60 Hz) and
white amplifier noise.

``nk.ecg_simulate(method="multileads")`` is not used: it min-max scales every lead to
[-0.4, 1.2] mV on its own (so III != II - I and amplitudes carry no information), integrates the
model 12 times (1.1-2.2 s per 30 s subject on this machine, against ~0.8 s for the 4 runs above),
starts with a visible transient from its initial condition, and its lead table gives lead II a
smaller QRS than T wave.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modalities.base import CORPUS_FILE, build_corpus
from modalities.ecg.leads import LEADS_12

__all__ = ["CORPUS_FILE", "simulate_corpus", "simulate_subject", "subject_parameters"]

_GENERATOR = "modalities.ecg.simulate/ecgsyn-dipole"
_VERSION = 1
_RECORD = "ecgsyn_{:04d}"
_RECORD_PATTERN = re.compile(r"ecgsyn_\d{4}\.(hea|dat)")
_ADC_GAIN = 1000.0  # counts per mV: 1 uV resolution, +-32.7 mV range in format 16

# Simulated before the kept signal: ECGSYN starts at the R peak with z = 0.04, and the leak
# (dz/dt = ... - z) takes a few seconds to forget that start.
_LEAD_IN_S = 4.0

# ECGSYN's published parameters (McSharry et al. 2003, Table 1): phase (degrees) and width (rad).
_THETA_DEG = np.array([-70.0, -15.0, 0.0, 15.0, 100.0])
_WIDTH = np.array([0.25, 0.1, 0.1, 0.1, 0.4])

# Dipole direction of each wave in Frank coordinates (X left, Y feet, Z back), from the textbook
# sequence of activation: P left-inferior; septal Q rightward-anterior; main R left-inferior-
# posterior (rS in V1, tall R in V5-V6, transition near V3); terminal S right-superior-posterior;
# T concordant with R but anterior (upright T in V2-V6 and II, inverted in aVR).
_DIRECTION = np.array(
    [
        [0.60, 0.75, 0.00],
        [-0.60, -0.10, -0.75],
        [0.70, 0.55, 0.45],
        [-0.45, -0.35, 0.80],
        [0.65, 0.55, -0.50],
    ]
)
_DIRECTION /= np.linalg.norm(_DIRECTION, axis=1, keepdims=True)
# Dipole magnitude ranges (mV) of each wave (P, Q, R, S, T); with the Dower gains the R wave is
# ~0.8-1.5 mV in II and up to ~2.7 mV in V4-V5 before the body gain.
_MAGNITUDE = np.array([[0.15, 0.30], [0.10, 0.30], [1.20, 2.20], [0.20, 0.60], [0.25, 0.50]])

# Dower, Machado & Osborne (1980): rows V1..V6, I, II; columns Frank X, Y, Z.
_DOWER = np.array(
    [
        [-0.515, 0.157, -0.917],
        [0.044, 0.164, -1.387],
        [0.882, 0.098, -1.277],
        [1.213, 0.127, -0.601],
        [1.125, 0.127, -0.086],
        [0.831, 0.076, 0.230],
        [0.632, -0.235, 0.059],
        [0.235, 1.066, -0.132],
    ]
)

# Lead voltages from the potentials of the electrodes RA, LA, LL, V1..V6 (columns). Rows follow
# LEADS_12; precordial leads are referred to Wilson's central terminal (RA + LA + LL) / 3.
_ELECTRODE_TO_LEAD = np.zeros((12, 9))
_ELECTRODE_TO_LEAD[0, :3] = [-1.0, 1.0, 0.0]  # I = LA - RA
_ELECTRODE_TO_LEAD[1, :3] = [-1.0, 0.0, 1.0]  # II = LL - RA
_ELECTRODE_TO_LEAD[2, :3] = [0.0, -1.0, 1.0]  # III = LL - LA
_ELECTRODE_TO_LEAD[3, :3] = [1.0, -0.5, -0.5]  # aVR
_ELECTRODE_TO_LEAD[4, :3] = [-0.5, 1.0, -0.5]  # aVL
_ELECTRODE_TO_LEAD[5, :3] = [-0.5, -0.5, 1.0]  # aVF
for _v in range(6):
    _ELECTRODE_TO_LEAD[6 + _v, :3] = -1.0 / 3.0
    _ELECTRODE_TO_LEAD[6 + _v, 3 + _v] = 1.0


def _rotation(frontal_deg: float, long_axis_deg: float, tilt_deg: float) -> np.ndarray:
    """Rotation of the heart: about Z (frontal plane), about Y (long axis), about X (tilt)."""
    a, b, c = np.deg2rad([frontal_deg, long_axis_deg, tilt_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[np.cos(b), 0.0, np.sin(b)], [0.0, 1.0, 0.0], [-np.sin(b), 0.0, np.cos(b)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(c), -np.sin(c)], [0.0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


def subject_parameters(seed: int, index: int) -> dict[str, Any]:
    """Draw the parameters of simulated subject ``index`` (a function of ``(seed, index)`` only)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    qrs_width = rng.uniform(0.85, 1.3)
    return {
        "heart_rate_bpm": float(rng.uniform(50.0, 110.0)),
        "heart_rate_std_bpm": float(rng.uniform(1.0, 4.0)),
        "lf_hf_ratio": float(rng.uniform(0.5, 2.0)),
        "theta_deg": (_THETA_DEG + rng.uniform(-1, 1, 5) * [8.0, 2.0, 0.0, 2.0, 10.0]).tolist(),
        "width_rad": (_WIDTH * [rng.uniform(0.8, 1.2), qrs_width, qrs_width, qrs_width,
                                rng.uniform(0.8, 1.2)]).tolist(),
        "magnitude_mv": rng.uniform(_MAGNITUDE[:, 0], _MAGNITUDE[:, 1]).tolist(),
        "direction_jitter": (0.12 * rng.standard_normal((5, 3))).tolist(),
        "rotation_deg": [float(rng.uniform(-30, 30)), float(rng.uniform(-20, 20)),
                         float(rng.uniform(-10, 10))],
        "body_gain": float(np.exp(0.2 * rng.standard_normal())),
        "chest_gain": np.exp(0.1 * rng.standard_normal(6)).tolist(),
        "baseline_wander_mv": float(rng.uniform(0.02, 0.3)),
        "respiration_hz": float(rng.uniform(0.15, 0.4)),
        "emg_rms_mv": float(rng.uniform(0.002, 0.03)),
        "mains_hz": float(rng.choice([50.0, 60.0])),
        "mains_mv": float(rng.uniform(0.0, 0.03)),
        "white_mv": 0.003,
        "ecgsyn_seed": int(rng.integers(2**31 - 1)),
        "noise_seed": int(rng.integers(2**31 - 1)),
    }


# ECGSYN runs per subject: (wave index, sign) pairs. neurokit2 integrates ECGSYN with an adaptive
# Runge-Kutta solver without a step limit, which now and then steps over a narrow Q, R or S event
# when the phase before it is quiet (measured: ~1 % of R waves simulated alone fall below 60 %
# height or vanish). Each narrow wave therefore shares its run with the wide P wave just before it,
# of opposite sign so that the two separate as the parts above and below the baseline (~0.3 % of
# Q/R/S events stay below 60 % height). P's train is taken from the first run; T runs alone.
_RUNS = (((0, 1.0), (1, -1.0)), ((0, -1.0), (2, 1.0)), ((0, 1.0), (3, -1.0)), ((4, 1.0),))


def _wave_trains(params: dict[str, Any], duration_s: float, fs: int) -> np.ndarray:
    """Unit-height ECGSYN train of each wave: float64[5, T] sharing one tachogram and phase."""
    import neurokit2 as nk  # heavy import, only needed when a corpus is (re)built

    n_lead_in = int(round(_LEAD_IN_S * fs))
    n = int(round(duration_s * fs))
    width = np.asarray(params["width_rad"])
    trains = np.empty((5, n))
    for run in _RUNS:
        # A wave's ECGSYN height is a_k b_k^2 / omega, so a_k = 100 / b_k^2 gives every wave of
        # the run the same height, far above the model's start value z0 = 0.04; the absolute
        # size is irrelevant since neurokit rescales every output to [-0.4, 1.2].
        ai = np.zeros(5)
        for k, sign in run:
            ai[k] = sign * 100.0 / width[k] ** 2
        z = np.asarray(
            nk.ecg_simulate(
                duration=_LEAD_IN_S + duration_s,
                sampling_rate=fs,
                noise=0,
                heart_rate=params["heart_rate_bpm"],
                heart_rate_std=params["heart_rate_std_bpm"],
                method="ecgsyn",
                random_state=params["ecgsyn_seed"],
                lfhfratio=params["lf_hf_ratio"],
                ti=tuple(params["theta_deg"]),
                ai=tuple(ai),
                bi=tuple(width),
            ),
            dtype=np.float64,
        )[n_lead_in : n_lead_in + n]
        z -= np.median(z)  # the waves are short: most of the cycle rests on the baseline
        for k, sign in run:
            if k == 0 and run is not _RUNS[0]:
                continue
            part = np.maximum(sign * z, 0.0)
            trains[k] = part / max(part.max(), 1e-12)
    return trains


def _band_noise(rng: np.random.Generator, shape: tuple[int, int], fs: float, low: float, high: float):
    """Gaussian noise with a flat spectrum in ``[low, high]`` Hz and none outside, unit SD.

    Shaped in the Fourier domain, so it has no filter start-up transient at the window edges.
    """
    n = shape[-1]
    spec = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    freqs = np.fft.rfftfreq(n, d=1.0 / fs)
    spec[..., (freqs < low) | (freqs > high)] = 0.0
    x = np.fft.irfft(spec, n=n, axis=-1)
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-12)


def _electrode_noise(params: dict[str, Any], n: int, fs: float) -> np.ndarray:
    """Noise potentials of the 9 electrodes RA, LA, LL, V1..V6 in mV: float64[9, n]."""
    rng = np.random.default_rng(params["noise_seed"])
    t = np.arange(n) / fs
    noise = np.zeros((9, n))

    # Baseline wander: respiration moves every electrode (common phase, own amplitude) plus a
    # slow independent drift of each electrode's contact.
    wander = params["baseline_wander_mv"]
    phase = rng.uniform(0, 2 * np.pi)
    resp = np.sin(2 * np.pi * params["respiration_hz"] * t + phase)
    noise += wander * rng.uniform(0.2, 1.0, (9, 1)) * resp
    noise += 0.5 * wander * _band_noise(rng, (9, n), fs, 0.01, 0.3)

    # EMG: broadband muscle noise (20-150 Hz) in bursts; the limb electrodes pick up more.
    high = min(150.0, 0.45 * fs)
    if high > 20.0:
        emg = _band_noise(rng, (9, n), fs, 20.0, high)
        bursts = np.exp(0.8 * _band_noise(rng, (9, n), fs, 0.01, 0.5))
        bursts /= np.sqrt(np.mean(bursts**2, axis=-1, keepdims=True))
        site = np.array([1.5, 1.5, 1.5, 1, 1, 1, 1, 1, 1])[:, None]
        noise += params["emg_rms_mv"] * site * bursts * emg

    # Mains: the differential pick-up of each electrode, in phase across electrodes.
    if params["mains_hz"] < fs / 2:
        mains = np.sin(2 * np.pi * params["mains_hz"] * t + rng.uniform(0, 2 * np.pi))
        noise += params["mains_mv"] * rng.uniform(0.5, 1.5, (9, 1)) * mains

    # Amplifier (thermal) noise, white.
    noise += params["white_mv"] * rng.standard_normal((9, n))
    return noise


def simulate_subject(params: dict[str, Any], duration_s: float, fs: int) -> np.ndarray:
    """One simulated 12-lead ECG in mV: float64[T, 12], leads in :data:`LEADS_12` order."""
    trains = _wave_trains(params, duration_s, fs)
    n = trains.shape[1]
    rot = _rotation(*params["rotation_deg"])
    directions = _DIRECTION + np.asarray(params["direction_jitter"])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    dipoles = (np.asarray(params["magnitude_mv"])[:, None] * directions) @ rot.T  # [5, 3]
    vcg = dipoles.T @ trains  # [3, T]: Frank X, Y, Z

    eight = _DOWER @ vcg  # V1..V6, I, II
    lead_i, lead_ii = eight[6], eight[7]
    ecg = np.empty((12, n))
    ecg[0], ecg[1] = lead_i, lead_ii
    ecg[2] = lead_ii - lead_i
    ecg[3] = -(lead_i + lead_ii) / 2
    ecg[4] = lead_i - lead_ii / 2
    ecg[5] = lead_ii - lead_i / 2
    ecg[6:] = eight[:6] * np.asarray(params["chest_gain"])[:, None]
    ecg *= params["body_gain"]

    ecg += _ELECTRODE_TO_LEAD @ _electrode_noise(params, n, fs)
    return ecg.T


def _corpus_spec(n_subjects: int, duration_s: float, fs: int, seed: int) -> dict[str, Any]:
    return {
        "generator": _GENERATOR,
        "version": _VERSION,
        "n_subjects": int(n_subjects),
        "duration_s": float(duration_s),
        "fs": int(fs),
        "seed": int(seed),
    }


def _write_record(out_dir: str, seed: int, index: int, duration_s: float, fs: int) -> dict[str, Any]:
    """Simulate subject ``index`` and write it as WFDB record ``ecgsyn_NNNN``; returns its parameters."""
    import wfdb

    params = subject_parameters(seed, index)
    ecg = simulate_subject(params, duration_s, fs)
    name = _RECORD.format(index)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * 12,
        sig_name=list(LEADS_12),
        p_signal=np.clip(ecg, -32.0, 32.0),
        fmt=["16"] * 12,
        adc_gain=[_ADC_GAIN] * 12,
        baseline=[0] * 12,
        comments=[
            f"ECGSYN dipole simulation, subject {index} of seed {seed}",
            f"heart rate {params['heart_rate_bpm']:.1f} bpm",
        ],
        write_dir=out_dir,
    )
    return {"record": name, **params}


def _default_workers(n_subjects: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4, n_subjects // 4))


def simulate_corpus(
    out_dir: Path,
    n_subjects: int = 32,
    duration_s: float = 30.0,
    fs: int = 500,
    seed: int = 0,
    *,
    workers: int | None = None,
) -> Path:
    """Write ``n_subjects`` simulated 12-lead ECGs as WFDB records into ``out_dir``.

    Each record ``ecgsyn_NNNN`` holds the leads of :data:`LEADS_12` in mV (format 16, 1000 counts
    per mV) at ``fs`` Hz for ``duration_s`` seconds; ``corpus.json`` records the corpus parameters
    and each subject's drawn parameters. Idempotent: when ``corpus.json`` matches the request and
    every record exists, nothing is simulated. A corpus with other parameters in ``out_dir`` is
    replaced (only ``ecgsyn_NNNN`` records and ``corpus.json`` are touched). Subject ``i`` depends
    only on ``(seed, i, duration_s, fs)``, so the output is the same for any ``workers``.

    Args:
        workers: processes that simulate subjects in parallel (default: the available cores, at
            most 4, and one per 4 subjects). Runtime is ~1.2 s of CPU per 30 s subject (5 ECGSYN
            integrations), ~20 s for the default corpus on 2 free cores.

    >>> root = simulate_corpus(Path("/tmp/ecgsyn"), n_subjects=2, duration_s=10)  # doctest: +SKIP
    """
    if n_subjects < 1 or duration_s <= 0 or int(fs) != fs or fs < 50:
        raise ValueError(
            f"simulate_corpus: need n_subjects >= 1, duration_s > 0 and an integer fs >= 50 Hz, "
            f"got {n_subjects}, {duration_s}, {fs}"
        )
    fs = int(fs)
    out_dir = Path(out_dir).expanduser()

    def build() -> dict[str, Any]:
        n_workers = _default_workers(n_subjects) if workers is None else max(1, int(workers))
        jobs = [(str(out_dir), int(seed), i, float(duration_s), fs) for i in range(n_subjects)]
        if n_workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
            subjects = [_write_record(*job) for job in jobs]
        else:
            # fork: workers inherit the imported modules instead of re-importing neurokit2 and
            # the caller's __main__; they only run numpy/scipy code.
            import neurokit2  # noqa: F401  (imported once, before forking)

            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
                subjects = list(pool.map(_write_record, *zip(*jobs)))
        return {"leads": list(LEADS_12), "units": "mV", "subjects": subjects}

    files = [f"{_RECORD.format(i)}{ext}" for i in range(n_subjects) for ext in (".hea", ".dat")]
    return build_corpus(out_dir, _corpus_spec(n_subjects, duration_s, fs, seed), files, _RECORD_PATTERN, build)
