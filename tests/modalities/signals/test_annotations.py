"""Annotation spans checked against mne (EDF+, FIF), mne.find_events (stim channels) and wfdb.rdann."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
import wfdb

from modalities.base import DataError
from modalities.signals.annotations import Span, read_annotations, sleep_stage, spans_from_stim
from modalities.signals.formats import inspect_file, read_frames
from modalities.signals.formats.wfdb import read_header
from tests.conftest import shared_data

SIGNALS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "signals"
EDF_FILES = sorted(str(p.relative_to(SIGNALS)) for p in SIGNALS.glob("**/*.edf")) if SIGNALS.is_dir() else []


def expected_label(text: str) -> str:
    """The label this library promises for an EDF+ text, written out independently of the code."""
    text = text.split("@@")[0].strip()
    table = {"Sleep stage W": "W", "Sleep stage 1": "N1", "Sleep stage 2": "N2", "Sleep stage 3": "N3",
             "Sleep stage 4": "N3", "Sleep stage R": "R", "Sleep stage ?": "?", "Sleep stage N1": "N1",
             "Sleep stage N2": "N2", "Sleep stage N3": "N3"}
    return table.get(text, text)


@pytest.mark.parametrize("rel", EDF_FILES or ["<shared data missing>"])
def test_edf_annotations_equal_mne(rel: str) -> None:
    path = shared_data("signals") / rel
    spans = read_annotations(path)
    ref = mne.read_annotations(path)
    order = np.argsort(ref.onset, kind="stable")
    assert len(spans) == len(ref) > 0
    np.testing.assert_allclose([s.onset_s for s in spans], ref.onset[order], atol=1e-6)
    np.testing.assert_allclose([s.duration_s for s in spans], ref.duration[order], atol=1e-6)
    assert [s.label for s in spans] == [expected_label(t) for t in ref.description[order]]


def test_hypnograms_and_overlapping_events() -> None:
    sc = read_annotations(shared_data("signals/sleep/SC4001EC-Hypnogram.edf"))
    assert sc[0].label == "W" and {s.label for s in sc} <= {"W", "N1", "N2", "N3", "R", "?"}
    hmc = read_annotations(shared_data("signals/sleep/test_edfann.edf"))
    lights = [s for s in hmc if s.label.startswith("Lights")]
    assert [(s.label, s.channel) for s in lights] == [("Lights off", "EEG F4-A1"), ("Lights on", "EEG Fpz-Cz")]
    stages = [s for s in hmc if s not in lights]
    assert {s.duration_s for s in stages} == {30.0}  # AASM epochs
    mi = read_annotations(shared_data("signals/eeg/test_edf_overlapping_annotations.edf"))
    assert {s.label for s in mi} == {"T0", "T1", "T2"}
    # Through the record (the signal file), the same spans.
    info = inspect_file(shared_data("signals/eeg/test_edf_overlapping_annotations.edf"))
    assert read_annotations(info) == mi
    read_frames(info, 0, 10)  # a window read leaves nothing open that would stop the annotation reader
    assert read_annotations(info.path) == mi


def test_sleep_stage_names() -> None:
    assert [sleep_stage(t) for t in ("Sleep stage W", "Sleep stage 4", "sleep stage n2", "Sleep stage R",
                                     "Movement time", "Lights off", "T1")] == ["W", "N3", "N2", "R", "MT", None, None]


def test_fif_annotations_are_relative_to_the_first_sample(tmp_path: Path) -> None:
    src = shared_data("signals/eeg/data_resting_EO_200Hz_raw.fif")
    assert read_annotations(src) == []  # the demo file has none
    raw = mne.io.read_raw_fif(src, preload=True, verbose="error")
    assert raw.first_samp > 0  # so onsets must be shifted by first_time
    raw.set_annotations(mne.Annotations(onset=[1.0, 5.5], duration=[0.5, 0.0], description=["blink", "T1"]))
    out = tmp_path / "annotated_raw.fif"
    raw.save(out, verbose="error")
    spans = read_annotations(out)
    back = mne.io.read_raw_fif(out, preload=False, verbose="error")
    expected = back.annotations.onset - back.first_time  # seconds from the first sample, by mne
    np.testing.assert_allclose([s.onset_s for s in spans], expected, atol=1e-9)
    np.testing.assert_allclose([s.onset_s for s in spans], [1.0, 5.5], atol=1.0 / raw.info["sfreq"])
    assert [(s.duration_s, s.label) for s in spans] == [(0.5, "blink"), (0.0, "T1")]


def test_stim_channel_spans_equal_find_events(tmp_path: Path) -> None:
    fs = 100
    rng = np.random.default_rng(2)
    eeg = np.round(rng.normal(0, 20, 30 * fs), 1)
    stim = np.zeros(30 * fs)
    for onset, length, value in [(120, 50, 1), (900, 20, 2), (920, 10, 3), (2500, 300, 1)]:
        stim[onset : onset + length] = value
    path = tmp_path / "events.edf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders([
            {"label": "EEG Cz", "dimension": "uV", "sample_frequency": fs, "physical_max": 500.0,
             "physical_min": -500.0, "digital_max": 32767, "digital_min": -32768},
            {"label": "STI 014", "dimension": "", "sample_frequency": fs, "physical_max": 32767.0,
             "physical_min": -32768.0, "digital_max": 32767, "digital_min": -32768},
        ])
        writer.setStartdatetime(datetime(2021, 5, 1))
        writer.writeSamples([eeg, stim])
    finally:
        writer.close()
    info = inspect_file(path)
    assert info.channel_types == ("eeg", "stim")
    spans = read_annotations(info)
    raw = mne.io.read_raw_edf(path, preload=True, stim_channel="STI 014", verbose="error")
    onsets = mne.find_events(raw, stim_channel="STI 014", consecutive=True, output="onset", verbose="error")
    offsets = mne.find_events(raw, stim_channel="STI 014", consecutive=True, output="offset", verbose="error")
    assert [s.label for s in spans] == [str(v) for v in onsets[:, 2]]
    np.testing.assert_allclose([s.onset_s for s in spans], onsets[:, 0] / fs)
    # mne's offset is the last sample of a run; a span ends one sample after it.
    np.testing.assert_allclose([s.end_s for s in spans], (offsets[:, 0] + 1) / fs)
    assert all(s.channel == "STI 014" for s in spans)
    assert read_annotations(info, stim=False) == []


def test_spans_from_stim_values() -> None:
    assert spans_from_stim(np.array([0, 0, 4, 4, 0, 2.5]), 2.0, "trig") == [
        Span(1.0, 1.0, "4", "trig"), Span(2.5, 0.5, "2.5", "trig")]


def test_wfdb_beat_annotations_equal_rdann() -> None:
    mitdb = shared_data("signals/mitdb")
    spans = read_annotations(mitdb / "100.atr")
    ann = wfdb.rdann(str(mitdb / "100"), "atr")
    assert len(spans) == ann.ann_len
    np.testing.assert_allclose([s.onset_s for s in spans], ann.sample / 360.0)
    assert [s.label.split(" ")[0] for s in spans] == list(ann.symbol)
    assert read_annotations(read_header(mitdb / "100")) == spans


def test_annotation_errors(tmp_path: Path) -> None:
    for bad, needle in [(tmp_path / "missing.edf", "no such file"), (tmp_path / "x.txt", "unknown annotation file")]:
        with pytest.raises(DataError) as exc:
            read_annotations(bad)
        assert "\n" not in str(exc.value) and str(exc.value).startswith(str(bad)) and needle in str(exc.value)
    garbage = tmp_path / "garbage.edf"
    garbage.write_bytes(b"0" * 100)
    with pytest.raises(DataError) as exc:
        read_annotations(garbage)
    assert str(exc.value).startswith(str(garbage))


def test_bdf_status_channel_uses_the_trigger_bits(tmp_path: Path) -> None:
    fs = 128
    status = np.full(10 * fs, float(1 << 20))  # a device-status bit, always on
    status[300:340] += 5
    status[900:910] += 7
    status[1000:] += float(1 << 17)  # a status bit that flips mid-recording: no event
    path = tmp_path / "biosemi.bdf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        writer.setSignalHeaders([
            {"label": "Cz", "dimension": "uV", "sample_frequency": fs, "physical_max": 1000.0,
             "physical_min": -1000.0, "digital_max": 8388607, "digital_min": -8388608},
            {"label": "Status", "dimension": "", "sample_frequency": fs, "physical_max": 8388607,
             "physical_min": -8388608, "digital_max": 8388607, "digital_min": -8388608},
        ])
        writer.writeSamples([np.zeros(10 * fs), status])
    finally:
        writer.close()
    info = inspect_file(path)
    assert info.channel_types == ("eeg", "stim")
    spans = read_annotations(info)
    raw = mne.io.read_raw_bdf(path, preload=True, verbose="error")
    events = mne.find_events(raw, stim_channel="Status", mask=0xFFFF, mask_type="and", consecutive=True,
                             output="onset", verbose="error")
    assert [(s.onset_s, s.label) for s in spans] == [(e[0] / fs, str(e[2])) for e in events]
    assert [s.label for s in spans] == ["5", "7"]
