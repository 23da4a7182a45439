"""The simulated ECGSYN corpus: WFDB round trip, physiology, determinism and idempotence."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pytest
import wfdb

from modalities.ecg.leads import LEADS_12, lead_alias
from modalities.ecg.simulate import CORPUS_FILE, simulate_corpus
from modalities.signals.index import index_records
from modalities.signals.windows import SignalWindows

N_SUBJECTS = 3
DURATION_S = 15.0
FS = 500


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_corpus(
        tmp_path_factory.mktemp("ecgsyn"), n_subjects=N_SUBJECTS, duration_s=DURATION_S, fs=FS, seed=0,
        workers=1,
    )


def _records(root: Path) -> list[Path]:
    return sorted(p.with_suffix("") for p in root.glob("ecgsyn_*.hea"))


def _meta(root: Path) -> dict:
    return json.loads((root / CORPUS_FILE).read_text())


def test_reads_back_as_12_lead_wfdb(corpus: Path) -> None:
    records = _records(corpus)
    assert len(records) == N_SUBJECTS
    for rec in records:
        r = wfdb.rdrecord(str(rec))
        assert r.sig_name == list(LEADS_12)
        assert r.fs == FS
        assert r.units == ["mV"] * 12
        assert r.fmt == ["16"] * 12
        assert r.p_signal.shape == (int(DURATION_S * FS), 12)
        assert np.isfinite(r.p_signal).all()
        # ECG-sized signals: QRS peak-to-peak of a few mV at most in every lead, never flat.
        ptp = np.ptp(r.p_signal, axis=0)
        assert (ptp > 0.1).all() and (ptp < 8.0).all(), ptp


def test_corpus_json_records_the_request(corpus: Path) -> None:
    meta = _meta(corpus)
    assert (meta["n_subjects"], meta["duration_s"], meta["fs"], meta["seed"]) == (N_SUBJECTS, DURATION_S, FS, 0)
    assert meta["leads"] == list(LEADS_12)
    assert [s["record"] for s in meta["subjects"]] == [p.name for p in _records(corpus)]
    for s in meta["subjects"]:
        assert 50.0 <= s["heart_rate_bpm"] <= 110.0


def test_limb_leads_obey_einthoven_and_goldberger(corpus: Path) -> None:
    for rec in _records(corpus):
        x = wfdb.rdrecord(str(rec)).p_signal
        lead = {name: x[:, i] for i, name in enumerate(LEADS_12)}
        tol = 2e-3  # each stored sample is rounded to 1 uV
        assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= tol
        assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() <= tol
        assert np.abs(lead["aVL"] - (lead["I"] - lead["II"] / 2)).max() <= tol
        assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= tol


def test_heart_rate_matches_the_requested_one(corpus: Path) -> None:
    meta = _meta(corpus)
    for s in meta["subjects"]:
        ii = wfdb.rdrecord(str(corpus / s["record"]), channel_names=["II"]).p_signal[:, 0]
        _, info = nk.ecg_peaks(nk.ecg_clean(ii, sampling_rate=FS), sampling_rate=FS)
        rr = np.diff(info["ECG_R_Peaks"]) / FS
        measured = 60.0 / rr.mean()
        assert abs(measured - s["heart_rate_bpm"]) < 3.0, (s["record"], measured, s["heart_rate_bpm"])


def test_precordial_r_wave_progression(corpus: Path) -> None:
    """At the R peaks of lead II, V1 is negative (rS) and V6 positive (qR), as in a normal heart."""
    for rec in _records(corpus):
        x = wfdb.rdrecord(str(rec)).p_signal
        _, info = nk.ecg_peaks(nk.ecg_clean(x[:, 1], sampling_rate=FS), sampling_rate=FS)
        peaks = info["ECG_R_Peaks"]
        v1, v6 = x[:, LEADS_12.index("V1")], x[:, LEADS_12.index("V6")]
        base1, base6 = np.median(v1), np.median(v6)
        assert np.median(v1[peaks] - base1) < -0.1
        assert np.median(v6[peaks] - base6) > 0.1


def test_idempotent(corpus: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()}
    start = time.perf_counter()
    again = simulate_corpus(corpus, n_subjects=N_SUBJECTS, duration_s=DURATION_S, fs=FS, seed=0)
    assert time.perf_counter() - start < 0.5
    assert again == corpus
    assert {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()} == stamps


def test_seeds_differ_and_subjects_do_not_depend_on_corpus_size(tmp_path: Path, corpus: Path) -> None:
    small = simulate_corpus(tmp_path / "a", n_subjects=1, duration_s=DURATION_S, fs=FS, seed=0)
    other = simulate_corpus(tmp_path / "b", n_subjects=1, duration_s=DURATION_S, fs=FS, seed=1)
    ref = (corpus / "ecgsyn_0000.dat").read_bytes()
    assert (small / "ecgsyn_0000.dat").read_bytes() == ref
    a = wfdb.rdrecord(str(corpus / "ecgsyn_0000")).p_signal
    b = wfdb.rdrecord(str(other / "ecgsyn_0000")).p_signal
    assert np.abs(a - b).mean() > 0.05
    assert _meta(other)["subjects"][0]["heart_rate_bpm"] != _meta(corpus)["subjects"][0]["heart_rate_bpm"]
    # Within one corpus the subjects differ too.
    c = wfdb.rdrecord(str(corpus / "ecgsyn_0001")).p_signal
    assert np.abs(a - c).mean() > 0.05


def test_other_parameters_replace_the_corpus(tmp_path: Path) -> None:
    root = simulate_corpus(tmp_path, n_subjects=2, duration_s=4.0, fs=FS, seed=0)
    (root / "unrelated.txt").write_text("kept")
    simulate_corpus(root, n_subjects=1, duration_s=5.0, fs=250, seed=0)
    assert [p.name for p in _records(root)] == ["ecgsyn_0000"]
    assert _meta(root)["n_subjects"] == 1 and _meta(root)["fs"] == 250
    r = wfdb.rdrecord(str(root / "ecgsyn_0000"))
    assert r.fs == 250 and r.p_signal.shape == (1250, 12)
    assert (root / "unrelated.txt").read_text() == "kept"


def test_incomplete_corpus_is_rebuilt(tmp_path: Path) -> None:
    root = simulate_corpus(tmp_path, n_subjects=2, duration_s=4.0, fs=FS, seed=0)
    ref = (root / "ecgsyn_0001.dat").read_bytes()
    os.remove(root / "ecgsyn_0001.dat")
    simulate_corpus(root, n_subjects=2, duration_s=4.0, fs=FS, seed=0)
    assert (root / "ecgsyn_0001.dat").read_bytes() == ref


def test_parallel_build_is_identical(tmp_path: Path) -> None:
    serial = simulate_corpus(tmp_path / "serial", n_subjects=2, duration_s=4.0, seed=3, workers=1)
    parallel = simulate_corpus(tmp_path / "parallel", n_subjects=2, duration_s=4.0, seed=3, workers=2)
    for name in ("ecgsyn_0000.dat", "ecgsyn_0001.dat"):
        assert (serial / name).read_bytes() == (parallel / name).read_bytes()
    assert _meta(serial)["subjects"] == _meta(parallel)["subjects"]


@pytest.mark.parametrize("kwargs", [{"n_subjects": 0}, {"duration_s": 0.0}, {"fs": 20}, {"fs": 250.5}])
def test_bad_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_corpus(tmp_path, **kwargs)
    assert not (tmp_path / CORPUS_FILE).exists()


def test_corpus_feeds_signal_windows(corpus: Path, tmp_path: Path) -> None:
    ds = SignalWindows(
        index_records(corpus, cache_dir=tmp_path), channels=LEADS_12, fs=FS, window_s=5.0,
        channel_aliases=lead_alias,
    )
    assert len(ds) == N_SUBJECTS * 2  # 13.5 s train part of each 15 s record: two 5 s windows
    x = ds[0, 0]["signal"].numpy()
    assert x.shape == (12, 2500)
    assert (x.std(axis=1) > 0.5).all()  # every lead filled and z-scored
