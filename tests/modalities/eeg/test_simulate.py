"""The simulated EEG corpus: EDF+ files with annotations, 1/f background, alpha peak, contralateral ERD."""

from __future__ import annotations

import json

import mne
import numpy as np
import pytest
from scipy.signal import welch

from modalities.eeg.recordings import index_eeg, read_events
from modalities.eeg.simulate import CHANNELS, simulate_corpus, simulate_subject, subject_parameters


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return simulate_corpus(tmp_path_factory.mktemp("eegsim"), n_subjects=3, duration_s=120.0)


def _raw_uv(path) -> tuple[np.ndarray, list[str], float]:
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    x = raw.get_data() * 1e6
    return x - x.mean(axis=0, keepdims=True), [c.replace("EEG ", "") for c in raw.ch_names], raw.info["sfreq"]


def test_files_go_through_the_eeg_reader_with_annotations(corpus):
    records = index_eeg(corpus)
    assert len(records) == 3
    assert records[0].names == CHANNELS and records[0].fs == 256.0 and records[0].duration_s == 120.0
    events = read_events(records[0])
    labels = {e.label for e in events}
    assert labels == {"T0", "T1", "T2"}
    assert all(e.label == "T0" for e in events[::2])  # rest and imagery alternate
    meta = json.loads((corpus / "corpus.json").read_text())
    assert [list(map(float, e[:2])) + [e[2]] for e in meta["subjects"][0]["events"]] == \
        [[pytest.approx(e.onset_s, abs=1e-3), pytest.approx(e.duration_s, abs=1e-3), e.label] for e in events]


def test_amplitudes_are_physiological(corpus):
    x, _, _ = _raw_uv(corpus / "eegsim_0000.edf")
    rms = x.std(axis=1)
    assert np.all((rms > 5) & (rms < 50)), rms  # scalp EEG: tens of uV


def test_spectrum_has_1_over_f_slope_and_alpha_peak(corpus):
    params = subject_parameters(0, 1)
    x, names, fs = _raw_uv(corpus / "eegsim_0001.edf")
    f, p = welch(x, fs, nperseg=int(4 * fs))
    o1 = p[names.index("O1")]
    # aperiodic fit in log-log outside the rhythms (2-6 Hz and 32-45 Hz)
    fit = ((f >= 2) & (f <= 6)) | ((f >= 32) & (f <= 45))
    slope, icpt = np.polyfit(np.log10(f[fit]), np.log10(o1[fit]), 1)
    assert -2.6 < slope < -0.8, slope
    peak = np.argmax(np.where((f >= 7) & (f <= 13), o1, 0))
    assert abs(f[peak] - params["alpha_hz"]) <= 0.5
    aperiodic_at_peak = 10 ** (icpt + slope * np.log10(f[peak]))
    assert o1[peak] > 5 * aperiodic_at_peak


def _alpha_power(x, fs, row, events, label):
    powers = []
    for onset, dur, lab in events:
        if lab == label:
            seg = x[row, int((onset + 0.8) * fs):int((onset + dur) * fs)]
            f, p = welch(seg, fs, nperseg=len(seg))
            powers.append(p[(f >= 8) & (f <= 13)].mean())
    return float(np.mean(powers))


def test_erd_lowers_alpha_power_contralaterally(corpus):
    ratios = {"T1": [], "T2": []}
    for i in range(3):
        x, names, fs = _raw_uv(corpus / f"eegsim_000{i}.edf")
        events = [(e.onset_s, e.duration_s, e.label) for e in read_events(corpus / f"eegsim_000{i}.edf")]
        c3, c4 = names.index("C3"), names.index("C4")
        for label in ratios:
            rest = [_alpha_power(x, fs, r, events, "T0") for r in (c3, c4)]
            move = [_alpha_power(x, fs, r, events, label) for r in (c3, c4)]
            ratios[label].append([m / r for m, r in zip(move, rest)])  # [C3, C4] power during / at rest
    t1, t2 = np.mean(ratios["T1"], axis=0), np.mean(ratios["T2"], axis=0)
    assert t1[1] < 0.7 and t1[1] < t1[0]  # left hand: right hemisphere (C4) desynchronises
    assert t2[0] < 0.7 and t2[0] < t2[1]  # right hand: left hemisphere (C3)


def test_seeded_and_independent_of_corpus_size():
    p = subject_parameters(5, 2)
    a, ev_a = simulate_subject(p, 20.0, 256)
    b, ev_b = simulate_subject(subject_parameters(5, 2), 20.0, 256)
    np.testing.assert_array_equal(a, b)
    assert ev_a == ev_b
    assert not np.allclose(a, simulate_subject(subject_parameters(6, 2), 20.0, 256)[0])


def test_rebuilt_only_when_the_request_changes(corpus):
    stamp = (corpus / "eegsim_0000.edf").stat().st_mtime_ns
    assert simulate_corpus(corpus, n_subjects=3, duration_s=120.0) == corpus
    assert (corpus / "eegsim_0000.edf").stat().st_mtime_ns == stamp
