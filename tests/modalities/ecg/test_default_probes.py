"""The ECG probes of a plain install: simulated ECGSYN subjects with known labels, no folder outside the package;
``data.probe_data`` selects the real annotated records instead."""

from __future__ import annotations

import json
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pytest
import wfdb

from modalities.base import DataError
from modalities.ecg.leads import LEADS_12
from modalities.ecg.probes import (HR_TRAIN_SUBJECTS, PROBE_SEED, PROBE_SUBJECTS, probe_targets,
                                   record_identity_probe)
from modalities.ecg.simulate import subject_parameters

FS = 500
II = LEADS_12.index("II")


@pytest.fixture(scope="module")
def cache(module_cache: Path) -> Path:
    return module_cache


@pytest.fixture(scope="module")
def default_probes(cache: Path):
    return probe_targets({"fs": FS}, None)


@pytest.fixture(scope="module")
def corpus(cache: Path, default_probes) -> Path:
    return cache / "ecg" / "probes" / f"ecgsyn-seed{PROBE_SEED}"


def test_default_probes_are_simulated_subjects_in_the_cache(default_probes, corpus: Path) -> None:
    assert set(default_probes) == {"subject_identity", "heart_rate"}
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["seed"] == PROBE_SEED != 0 and meta["n_subjects"] == PROBE_SUBJECTS
    for ps in default_probes.values():
        assert ps.source.startswith(f"simulated (ECGSYN, seed {PROBE_SEED}): {PROBE_SUBJECTS} subjects")
        assert "shared" not in ps.description and "probe-data" not in ps.source
    ident = default_probes["subject_identity"]
    assert ident.class_names == tuple(f"ecgsyn_{i:04d}" for i in range(PROBE_SUBJECTS))
    # 20 s subjects, 2.5 s windows every 1.25 s inside each third: 4 windows per block, 12 per subject
    assert np.bincount(ident.y_train).tolist() == [12] * PROBE_SUBJECTS
    assert np.bincount(ident.folds).tolist() == [4 * PROBE_SUBJECTS] * 3
    assert ident.x_train.shape[1:] == (12, 1250) and ident.meta["knn_k"] == 1
    # one lead per subject in slot II, every other slot empty
    assert np.all(ident.x_train[:, [i for i in range(12) if i != II]] == 0)
    assert np.all(ident.x_train[:, II].std(-1) > 0.5)


def test_probe_subjects_are_not_the_training_default() -> None:
    train_rates = {subject_parameters(0, i)["heart_rate_bpm"] for i in range(32)}  # the embedded default corpus
    probe_rates = {subject_parameters(PROBE_SEED, i)["heart_rate_bpm"] for i in range(PROBE_SUBJECTS)}
    assert not train_rates & probe_rates


def test_heart_rate_labels_are_the_simulated_rates(default_probes, corpus: Path) -> None:
    hr = default_probes["heart_rate"]
    assert hr.task == "regression" and hr.x_train.shape[1:] == hr.x_test.shape[1:] == (12, 2500)
    rates = [subject_parameters(PROBE_SEED, i)["heart_rate_bpm"] for i in range(PROBE_SUBJECTS)]
    # 20 s subjects, 5 s windows every 2.5 s: 7 per subject; subjects 0-15 train, 16-23 test
    assert hr.y_train.tolist() == [r for r in rates[:HR_TRAIN_SUBJECTS] for _ in range(7)]
    assert hr.y_test.tolist() == [r for r in rates[HR_TRAIN_SUBJECTS:] for _ in range(7)]
    assert set(hr.meta["subjects"]["train"]).isdisjoint(hr.meta["subjects"]["test"])
    # hand-checked: the first test subject (ecgsyn_0016 of seed 1001) was simulated at 82.57 bpm
    assert hr.meta["subjects"]["test"][0] == "ecgsyn_0016"
    assert hr.y_test[0] == pytest.approx(82.5687, abs=1e-3)
    # ... and its lead II beats at that rate: the label is a function of the signal
    ii = wfdb.rdrecord(str(corpus / "ecgsyn_0016"), channel_names=["II"]).p_signal[:, 0]
    _, info = nk.ecg_peaks(nk.ecg_clean(ii, sampling_rate=FS), sampling_rate=FS)
    assert 60.0 / np.diff(info["ECG_R_Peaks"]).mean() * FS == pytest.approx(82.57, abs=3.0)
    # the same window inside the probe: R peaks of its (band-passed, z-scored) lead II give the same rate
    _, info = nk.ecg_peaks(hr.x_test[0, II].astype(np.float64), sampling_rate=FS)
    assert 60.0 / np.diff(info["ECG_R_Peaks"]).mean() * FS == pytest.approx(82.57, abs=6.0)


def test_probe_data_gives_the_real_record_probes(signals_dir: Path) -> None:
    probes = probe_targets({"fs": FS, "probe_data": str(signals_dir)}, None)
    assert set(probes) == {"beat_class", "record_identity"}
    assert all(ps.source == f"--probe-data {signals_dir.absolute()}" for ps in probes.values())
    assert probes["beat_class"].class_names == ("N", "A")
    # exactly the probe the real records gave before: identity cross-validated over thirds of every record
    ident = probes["record_identity"]
    same = record_identity_probe(signals_dir, fs=FS, window_s=2.5, stride_s=1.25, max_per_record=120, folds=3)
    assert ident.class_names == same.class_names and np.array_equal(ident.y_train, same.y_train)
    assert np.array_equal(ident.x_train, same.x_train)
    # the signals_root argument is the same folder
    assert set(probe_targets({"fs": FS}, None, signals_root=signals_dir)) == {"beat_class", "record_identity"}


def test_missing_probe_data_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data\.probe_data: .*nowhere is not a folder$"):
        probe_targets({"fs": FS, "probe_data": str(tmp_path / "nowhere")}, None)

