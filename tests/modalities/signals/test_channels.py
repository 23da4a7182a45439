"""Channel names, types, picking and re-referencing, checked against mne's montage, eegbci and references."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from modalities.base import DataError
from modalities.signals.channels import (
    electrode_names,
    infer_channel_type,
    normalize_channel_name,
    pick_channels,
    rereference,
    unit_scale,
)
from modalities.signals.formats import inspect_file
from modalities.signals.resampled import read_window_resampled
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def eegmmidb() -> Path:
    return shared_data("signals/eeg/test_edf_overlapping_annotations.edf")


def test_eegmmidb_names_equal_mne_eegbci_standardize(eegmmidb: Path) -> None:
    raw = mne.io.read_raw_edf(eegmmidb, preload=False, verbose="error")
    original = list(raw.ch_names)
    mne.datasets.eegbci.standardize(raw)  # mne's own fix of the BCI2000 labels
    assert [normalize_channel_name(c) for c in original] == raw.ch_names
    # Every one is a 10-05 position of mne's montage, in its spelling.
    kind = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    montage = set(mne.channels.make_standard_montage(kind).ch_names)
    assert set(raw.ch_names) <= montage


@pytest.mark.parametrize("name, expected", [
    ("EEG Fpz-Cz", "Fpz-Cz"), ("EEG Pz-Oz", "Pz-Oz"), ("CZ-A2", "Cz-A2"), ("F4-A1", "F4-A1"),
    ("EEG FP1-REF", "Fp1"), ("  fc5. ", "FC5"), ("AFz..", "AFz"), ("EOG horizontal", "EOG horizontal"),
    ("PLETH", "PLETH"), ("MLII", "MLII"),
])
def test_normalize_channel_name(name: str, expected: str) -> None:
    assert normalize_channel_name(name) == expected
    for part in expected.split("-"):
        if part.upper() in electrode_names():
            assert part == electrode_names()[part.upper()]  # the montage's own case


@pytest.mark.parametrize("name, kind", [
    ("EEG Fpz-Cz", "eeg"), ("Fc5.", "eeg"), ("Cz-A2", "eeg"), ("EOG horizontal", "eog"), ("LOC", "eog"),
    ("EMG submental", "emg"), ("Resp oro-nasal", "resp"), ("Event marker", "stim"), ("STI 014", "stim"),
    ("PLETH", "ppg"), ("MLII", "ecg"), ("V5", "ecg"), ("ECG 1", "ecg"), ("ABP", "misc"), ("Temp rectal", "misc"),
])
def test_infer_channel_type(name: str, kind: str) -> None:
    assert infer_channel_type(name) == kind


def test_types_of_shared_files_agree_with_the_file() -> None:
    fif = shared_data("signals/eeg/data_resting_EO_200Hz_raw.fif")
    raw = mne.io.read_raw_fif(fif, preload=False, verbose="error")
    assert inspect_file(fif).channel_types == tuple(raw.get_channel_types())
    # The motor-imagery EDF has no type field; every label is a 10-10 electrode.
    info = inspect_file(shared_data("signals/eeg/test_edf_overlapping_annotations.edf"))
    assert set(info.channel_types) == {"eeg"}


def test_pick_channels_by_name_and_type(eegmmidb: Path) -> None:
    info = inspect_file(eegmmidb)
    picked = pick_channels(info.channels, ["fc5", "CZ", "Fp1"], channel_types=info.channel_types, record=info.path)
    assert picked == ["Fc5.", "Cz..", "Fp1."]  # the file's own labels, in the order asked
    x = read_window_resampled(info, 10.0, 1.0, picked, info.fs)
    assert x.shape == (3, 128)
    assert pick_channels(info.channels, types="eeg", record=info.path) == list(info.channels)
    assert pick_channels(info, ["fc5", "CZ", "Fp1"]) == picked  # a RecordInfo brings its names, types, path
    with pytest.raises(DataError) as exc:
        pick_channels(info, types="ppg")
    assert str(exc.value).startswith(info.path)
    chans = ["F4-A1", "EOG left", "PLETH"]
    assert pick_channels(chans, types=["eog", "ppg"]) == ["EOG left", "PLETH"]
    assert pick_channels(chans, ["f4-a1"]) == ["F4-A1"]


def test_pick_nothing_is_one_clear_line(eegmmidb: Path) -> None:
    info = inspect_file(eegmmidb)
    with pytest.raises(DataError) as exc:
        pick_channels(info.channels, ["EOG left", "C3"], record=info.path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(info.path)
    assert "EOG left" in message and "Fc5." in message and "Iz.." in message  # lists what there is
    with pytest.raises(DataError) as exc:
        pick_channels(info.channels, types="ppg", record=info.path)
    assert str(exc.value).startswith(info.path) and "ppg" in str(exc.value)
    with pytest.raises(DataError):
        pick_channels(info.channels, types="brainwaves", record=info.path)


def _raw_array(x: np.ndarray, names: list[str]) -> mne.io.RawArray:
    return mne.io.RawArray(x, mne.create_info(names, 100.0, "eeg"), verbose="error")


@pytest.mark.parametrize("ref", ["average", "Cz", ["M1", "M2"]])
def test_rereference_equals_mne(ref: str | list[str]) -> None:
    names = ["Fz", "Cz", "Pz", "M1", "M2"]
    x = np.random.default_rng(0).normal(size=(5, 300)) * 1e-5
    ours, kept = rereference(x, ["fz", "CZ", "pz", "m1", "M2"], ref)
    raw, _ = mne.set_eeg_reference(_raw_array(x.copy(), names), ref_channels=ref, copy=True, verbose="error")
    np.testing.assert_allclose(ours, raw.get_data(), atol=1e-15)
    assert kept == ["fz", "CZ", "pz", "m1", "M2"]
    if ref != "average":
        dropped, kept = rereference(x, names, ref, drop_ref=True)
        refs = [ref] if isinstance(ref, str) else ref
        assert kept == [n for n in names if n not in refs]
        np.testing.assert_allclose(dropped, raw.get_data(picks=kept), atol=1e-15)


def test_rereference_errors() -> None:
    with pytest.raises(DataError) as exc:
        rereference(np.zeros((2, 10)), ["Fz", "Cz"], ["A1", "A2"], record="rec.edf")
    assert str(exc.value).startswith("rec.edf: no channel matches A1, A2")
    with pytest.raises(DataError):
        rereference(np.zeros((3, 10)), ["Fz", "Cz"], "average", record="rec.edf")


def test_unit_scale() -> None:
    assert unit_scale("V", "uV") == 1e6 and unit_scale("µV", "mV") == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        unit_scale("mmHg")
