"""The EEG probe of a plain install: rest vs left vs right imagery on simulated runs (known event schedule), no
folder outside the package; ``data.probe_data`` selects the real recordings instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from modalities.base import DataError
from modalities.eeg.probes import MOTOR_CHANNELS, PROBE_SEED, PROBE_SUBJECTS, probe_targets
from modalities.eeg.simulate import subject_parameters


@pytest.fixture(scope="module")
def cache(module_cache: Path) -> Path:
    return module_cache


@pytest.fixture(scope="module")
def probe(cache: Path):
    probes = probe_targets({"fs": 128}, None)
    assert set(probes) == {"motor_imagery_3class"}
    return probes["motor_imagery_3class"]


@pytest.fixture(scope="module")
def corpus(cache: Path, probe) -> dict:
    return json.loads((cache / "eeg" / "probes" / f"eegsim-seed{PROBE_SEED}" / "corpus.json").read_text())


def test_default_probe_is_simulated_runs_in_the_cache(probe, corpus: dict) -> None:
    assert corpus["seed"] == PROBE_SEED != 0 and corpus["n_subjects"] == PROBE_SUBJECTS
    assert probe.source == f"simulated (motor imagery, seed {PROBE_SEED}): {PROBE_SUBJECTS} subjects of 120 s, " \
                           "not in the training default"
    assert probe.class_names == ("rest (T0)", "left hand (T1)", "right hand (T2)")
    assert probe.meta["embedding"] == "channels" and len(probe.y_test) == 0
    # 2 s windows at 128 Hz on the seven sensorimotor channels
    assert probe.x_train.shape[1:] == (len(MOTOR_CHANNELS), 256)
    assert np.all(np.abs(probe.x_train.std(-1) - 1) < 0.05)  # z-scored per channel


def test_labels_and_folds_are_the_simulated_schedule(probe, corpus: dict) -> None:
    names = {"T0": 0, "T1": 1, "T2": 2}
    expected, blocks = [], []
    for s in corpus["subjects"]:  # every event fits a window (rest >= 3.5 s, imagery 4 s; 0.8 + 2 s needed)
        for onset, dur, label in s["events"]:
            if onset + 2.8 <= 120.0:
                expected.append(names[label])
                blocks.append(min(int(onset // 20.0), 5))
    assert probe.y_train.tolist() == expected and probe.folds.tolist() == blocks
    assert np.bincount(probe.y_train).tolist() == [90, 41, 44]
    # hand-checked: subject 0 of seed 1001 starts with rest, right, rest, right, rest
    assert corpus["subjects"][0]["events"][:2] == [[0.0, 3.946, "T0"], [3.946, 4.0, "T2"]]
    assert probe.y_train[:5].tolist() == [0, 2, 0, 2, 0] and probe.meta["runs"][0] == "eegsim_0000.edf"
    # the probe subjects are not those of the embedded training default (seed 0)
    assert corpus["subjects"][0]["alpha_hz"] == subject_parameters(PROBE_SEED, 0)["alpha_hz"]
    assert all(subject_parameters(0, i)["alpha_hz"] != s["alpha_hz"] for i in range(12) for s in corpus["subjects"])


def test_labels_are_a_function_of_the_signal(probe) -> None:
    """Left-hand imagery desynchronises mu over the right hemisphere (C4), right-hand over the left (C3)."""
    f, p = welch(probe.x_train, fs=128, nperseg=256, axis=-1)
    mu = p[..., (f >= 8) & (f <= 14)].mean(-1)
    lat = np.log(mu[:, MOTOR_CHANNELS.index("C4")] / mu[:, MOTOR_CHANNELS.index("C3")])
    rest, left, right = (lat[probe.y_train == k].mean() for k in range(3))
    assert left < rest - 0.2 and right > rest + 0.3, (rest, left, right)


def test_probe_data_gives_the_real_recording_probes(signals_dir: Path) -> None:
    probes = probe_targets({"fs": 128, "probe_data": str(signals_dir)}, None)
    assert set(probes) == {"motor_imagery", "record_identity"}
    assert all(ps.source == f"--probe-data {signals_dir.absolute()}" for ps in probes.values())
    assert np.bincount(probes["motor_imagery"].y_train).tolist() == [19, 19]


def test_missing_probe_data_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data\.probe_data: .*nowhere is not a folder$"):
        probe_targets({"fs": 128, "probe_data": str(tmp_path / "nowhere")}, None)


@pytest.mark.slow
def test_command_line_report_probes_default_and_probe_data(signals_dir: Path, tmp_path: Path, run_cache) -> None:
    """``python -m pretrain eeg``: the report's probe table holds the simulated 3-class probe; with
    ``--probe-data DIR`` (written to config.yaml as an absolute path) the real-recording probes instead."""
    import yaml

    from pretrain.cli import main

    common = ["eeg", "--max-steps", "2", "--batch-size", "4", "--quiet", "--set", "model.name=eegformer_xs"]
    assert main([*common, "--out", str(tmp_path / "sim")]) == 0
    report = (tmp_path / "sim" / "report.md").read_text()
    assert "| motor_imagery_3class | pretrained |" in report and "| record_identity |" not in report
    assert main([*common, "--out", str(tmp_path / "real"), "--probe-data", str(signals_dir)]) == 0
    cfg = yaml.safe_load((tmp_path / "real" / "config.yaml").read_text())
    assert cfg["data"]["probe_data"] == str(signals_dir.resolve())
    report = (tmp_path / "real" / "report.md").read_text()
    assert "| motor_imagery | pretrained |" in report and "| record_identity | random init |" in report
    assert "motor_imagery_3class" not in report
