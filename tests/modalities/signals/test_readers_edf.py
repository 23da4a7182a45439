"""EDF / EDF+ / BDF and FIF reads, checked against pyedflib and mne reading the same files directly."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest

from modalities.base import DataError
from modalities.signals.formats import inspect_file, read_frames
from modalities.signals.formats.edf import inspect_edf
from modalities.signals.record import frame_layout
from modalities.signals.index import index_records
from modalities.signals.resampled import read_window_resampled
from tests.conftest import shared_data

SIGNALS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "signals"
EDF_FILES = sorted(str(p.relative_to(SIGNALS)) for p in SIGNALS.glob("**/*.edf")) if SIGNALS.is_dir() else []
FIF_FILES = sorted(str(p.relative_to(SIGNALS)) for p in SIGNALS.glob("**/*.fif")) if SIGNALS.is_dir() else []


def one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    return message


@pytest.mark.parametrize("rel", EDF_FILES or ["<shared data missing>"])
def test_every_shared_edf_matches_pyedflib(rel: str) -> None:
    path = shared_data("signals") / rel
    info = inspect_file(path)
    if info is not None:
        n = info.n_frames * info.samples_per_frame[0]
        start, stop = n // 3, n // 3 + int(2 * info.fs)
        ours = read_frames(info, start, stop)
    ref = pyedflib.EdfReader(str(path))
    try:
        if ref.signals_in_file == 0:  # a hypnogram / scoring file: annotations only
            assert info is None
            return
        assert info is not None and info.format == "edf"
        assert info.channels == tuple(ref.getSignalLabels())
        assert info.units == tuple(ref.getPhysicalDimension(i) for i in range(ref.signals_in_file))
        for c, rate in enumerate(ref.getSampleFrequencies()):
            assert info.channel_fs(info.channels[c]) == pytest.approx(rate)
        assert info.duration_s == pytest.approx(ref.file_duration)
        for c, x in enumerate(ours):
            np.testing.assert_allclose(x, ref.readSignal(c)[start:stop], rtol=0, atol=1e-9)
    finally:
        ref.close()
    # mne, reading in volts, agrees too.
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    np.testing.assert_allclose(np.stack(ours) * 1e-6, raw.get_data(start=start, stop=stop), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rel", FIF_FILES or ["<shared data missing>"])
def test_every_shared_fif_matches_mne(rel: str) -> None:
    path = shared_data("signals") / rel
    info = inspect_file(path)
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert info is not None and info.format == "fif"
    assert (info.fs, info.n_frames, info.channels) == (raw.info["sfreq"], raw.n_times, tuple(raw.ch_names))
    assert info.channel_types == tuple(raw.get_channel_types())  # eeg here: the file says so
    assert info.units == ("V",) * len(raw.ch_names)
    full = raw.get_data()
    start = raw.n_times // 2
    np.testing.assert_array_equal(np.stack(read_frames(info, start, start + 400)), full[:, start : start + 400])
    out = read_window_resampled(info, start / info.fs, 2.0, list(info.channels), info.fs)
    np.testing.assert_allclose(out, full[:, start : start + 400].astype(np.float32), rtol=0, atol=0)


def test_index_of_shared_signals_has_every_format(tmp_path: Path) -> None:
    signals = shared_data("signals")
    with pytest.warns(UserWarning, match="data.csv"):
        records = index_records(signals, cache_dir=tmp_path)
    by_format: dict[str, list[str]] = {}
    for r in records:
        by_format.setdefault(r.format, []).append(str(Path(r.path).relative_to(signals)))
    assert by_format["edf"] == ["eeg/test_edf_overlapping_annotations.edf"]  # hypnograms are not signals
    assert by_format["fif"] == ["eeg/data_resting_EO_200Hz_raw.fif"]
    assert by_format["csv"] == ["ppg_heartpy/data2.csv", "ppg_heartpy/data3.csv"]
    assert by_format["npz"] == ["sleep/data_EOGs_REM_256Hz.npz"]  # the .txt columns need a rate: single files
    assert all(len(r.channel_types) == len(r.channels) for r in records)
    with pytest.warns(UserWarning):
        assert index_records(signals, cache_dir=tmp_path) == records  # from the JSON cache


def test_eegmmidb_window_is_read_lazily() -> None:
    path = shared_data("signals/eeg/test_edf_overlapping_annotations.edf")
    info = inspect_file(path)
    assert info is not None and (info.fs, info.samples_per_frame) == (128.0, (1,) * 64)

    def rchar() -> int:
        return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])

    read_frames(info, 0, 10)  # imports and first-call costs out of the count
    before = rchar()
    x = read_frames(info, 6400, 6528, ["Fc5.", "Cz.."])  # 1 s of 2 of 64 channels of 124 s
    used = rchar() - before
    assert used < path.stat().st_size / 50, used
    ref = pyedflib.EdfReader(str(path))
    try:
        for name, got in zip(["Fc5.", "Cz.."], x):
            np.testing.assert_array_equal(got, ref.readSignal(info.channels.index(name), 6400, 128))
    finally:
        ref.close()


def _write_edf(path: Path, signals: list[np.ndarray], rates: list[int], labels: list[str],
               filetype: int = pyedflib.FILETYPE_EDFPLUS, dimension: str = "uV") -> None:
    writer = pyedflib.EdfWriter(str(path), len(signals), file_type=filetype)
    try:
        headers = []
        for x, rate, label in zip(signals, rates, labels):
            headers.append({"label": label, "dimension": dimension, "sample_frequency": rate,
                            "physical_max": 1000.0, "physical_min": -1000.0,
                            "digital_max": 8388607 if filetype in (pyedflib.FILETYPE_BDF, pyedflib.FILETYPE_BDFPLUS)
                            else 32767,
                            "digital_min": -8388608 if filetype in (pyedflib.FILETYPE_BDF, pyedflib.FILETYPE_BDFPLUS)
                            else -32768})
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(datetime(2020, 1, 1, 0, 0, 0))
        writer.writeSamples(signals)
        writer.writeAnnotation(1.5, 2.0, "arousal")
    finally:
        writer.close()


def test_mixed_rate_bdf_written_by_pyedflib(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    eeg = np.round(rng.normal(0, 100, 256 * 20), 2)
    resp = np.round(rng.normal(0, 100, 16 * 20), 2)
    path = tmp_path / "mixed.bdf"
    _write_edf(path, [eeg, resp], [256, 16], ["EEG C3-M2", "Resp thorax"], pyedflib.FILETYPE_BDFPLUS)
    info = inspect_edf(path)
    assert info is not None and info.format == "bdf"
    assert (info.fs, info.samples_per_frame, info.n_frames) == (16.0, (16, 1), 320)
    assert info.channel_types == ("eeg", "resp")
    c3, th = read_frames(info, 32, 48)  # 1 s from 2 s
    step = 2000.0 / (2**24 - 1)  # the BDF quantisation of a +-1000 range
    np.testing.assert_allclose(c3, eeg[512:768], atol=step)
    np.testing.assert_allclose(th, resp[32:48], atol=step)
    ref = pyedflib.EdfReader(str(path))
    try:
        np.testing.assert_array_equal(c3, ref.readSignal(0)[512:768])
    finally:
        ref.close()
    out = read_window_resampled(info, 2.0, 1.0, ["Resp thorax", "EEG C3-M2"], 256.0)
    assert out.shape == (2, 256)
    np.testing.assert_array_equal(out[1], c3.astype(np.float32))  # at its own rate: the file's samples


def test_frame_layout() -> None:
    assert frame_layout([100, 1]) == (1.0, (100, 1))
    assert frame_layout([128.0, 128.0]) == (128.0, (1, 1))
    assert frame_layout([500, 200, 50]) == (50.0, (10, 4, 1))
    assert frame_layout([0.5, 2.0]) == (0.5, (1, 4))


def test_wrong_header_length_is_one_line(tmp_path: Path) -> None:
    src = shared_data("signals/eeg/test_edf_overlapping_annotations.edf")
    data = bytearray(src.read_bytes())
    declared = int(data[184:192])  # "number of bytes in header record"
    data[184:192] = f"{declared + 256:<8d}".encode()
    bad = tmp_path / "bad_header.edf"
    bad.write_bytes(bytes(data))
    for call in (lambda: inspect_file(bad), lambda: index_records(bad), lambda: index_records(tmp_path)):
        with pytest.raises(DataError) as exc:
            call()
        assert "EDF" in one_line(exc, bad)
    # A truncated file: pyedflib refuses it and mne would quietly read the whole records left.
    short = tmp_path / "truncated.edf"
    short.write_bytes(src.read_bytes()[:-5000])
    with pytest.raises(DataError) as exc:
        inspect_file(short)
    assert "truncated" in one_line(exc, short)


def test_discontinuous_edf_is_read_through_mne(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0, 50, 100 * 10), 1)
    path = tmp_path / "plus_d.edf"
    _write_edf(path, [x], [100], ["EEG Fz"])
    data = bytearray(path.read_bytes())
    assert data[192:197] == b"EDF+C"
    data[192:197] = b"EDF+D"  # contiguous records, but declared discontinuous: pyedflib refuses it
    path.write_bytes(bytes(data))
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(path))
    with pytest.warns(UserWarning, match="EDF\\+D"):
        info = inspect_file(path)
    assert info is not None and info.comments[0] == "EDF+D" and info.units == ("V",)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    np.testing.assert_array_equal(read_frames(info, 100, 300)[0], raw.get_data()[0, 100:300])
    np.testing.assert_allclose(read_frames(info, 100, 300)[0] * 1e6, x[100:300], atol=0.05)


def test_unknown_file_type(tmp_path: Path) -> None:
    odd = tmp_path / "recording.xyz"
    odd.write_text("1\n2\n")
    with pytest.raises(DataError) as exc:
        index_records(odd)
    assert "unknown file type" in one_line(exc, odd)
    with pytest.raises(DataError) as exc:
        inspect_file(odd)
    assert ".edf" in one_line(exc, odd)
    hypnogram = shared_data("signals/sleep/SC4001EC-Hypnogram.edf")
    with pytest.raises(DataError) as exc:
        index_records(hypnogram)
    assert "annotations only" in one_line(exc, hypnogram)



def _write_eeglab(folder: Path, x: np.ndarray, fs: float, names: list[str], kinds: list[str]) -> Path:
    """A minimal EEGLAB dataset: ``rec.set`` (a MATLAB struct, via scipy) + ``rec.fdt`` (float32 samples)."""
    from scipy.io import savemat

    n = x.shape[1]
    x.T.astype("<f4").tofile(folder / "rec.fdt")  # .fdt: float32, one frame (all channels) after another
    chanlocs = np.zeros((1, len(names)), dtype=[("labels", "O"), ("type", "O")])
    for i, (name, kind) in enumerate(zip(names, kinds)):
        chanlocs[0, i] = (name, kind)
    eeg = {"setname": "rec", "filename": "rec.set", "filepath": "", "nbchan": float(len(names)), "trials": 1.0,
           "pnts": float(n), "srate": fs, "xmin": 0.0, "xmax": (n - 1) / fs, "times": np.arange(n) / fs * 1e3,
           "data": "rec.fdt", "chanlocs": chanlocs, "ref": "common",
           "event": np.zeros((1, 0), dtype=[("type", "O"), ("latency", "O")]), "urevent": np.zeros((0, 0)),
           "epoch": np.zeros((0, 0)), "icawinv": np.zeros((0, 0)), "icasphere": np.zeros((0, 0)),
           "icaweights": np.zeros((0, 0)), "chaninfo": {"nosedir": "+X"}}
    savemat(folder / "rec.set", {"EEG": eeg}, appendmat=False)
    return folder / "rec.set"


def test_eeglab_set_with_fdt_matches_mne(tmp_path: Path) -> None:
    fs = 250.0
    x = (np.random.default_rng(4).normal(size=(3, 2500)) * 10).astype(np.float32)
    path = _write_eeglab(tmp_path, x, fs, ["Fz", "Cz", "EOG1"], ["EEG", "EEG", "EOG"])
    (info,) = index_records(path)
    raw = mne.io.read_raw_eeglab(path, preload=False, verbose="error")
    assert (info.format, info.fs, info.n_frames, info.channels) == ("set", fs, 2500, tuple(raw.ch_names))
    assert info.channel_types == tuple(raw.get_channel_types()) == ("eeg", "eeg", "eog")
    got = np.stack(read_frames(info, 1000, 1250))
    np.testing.assert_array_equal(got, raw.get_data(start=1000, stop=1250))
    np.testing.assert_allclose(got * 1e6, x[:, 1000:1250], rtol=1e-6)  # mne scales uV to V
    # The .fdt is a data file of the record: the folder index re-reads when it changes.
    records = index_records(tmp_path, cache_dir=tmp_path / "cache")
    assert [r.format for r in records] == ["set"]
    with open(tmp_path / "rec.fdt", "r+b") as f:
        f.truncate(4 * 3 * 2000)
    with pytest.raises(DataError) as exc:
        index_records(tmp_path, cache_dir=tmp_path / "cache")
    assert "24000 bytes" in one_line(exc, tmp_path / "rec.fdt")


def _child_read(args: tuple) -> np.ndarray:
    info, start, stop = args
    return np.stack(read_frames(info, start, stop, ["Fc5.", "Oz.."]))


def test_reads_in_forked_workers_equal_the_parent() -> None:
    import multiprocessing

    info = inspect_file(shared_data("signals/eeg/test_edf_overlapping_annotations.edf"))
    parent = [_child_read((info, s, s + 256)) for s in (0, 5000, 15000)]  # the parent has read first
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_child_read, [(info, s, s + 256) for s in (0, 5000, 15000)])
    for a, b in zip(parent, children):
        np.testing.assert_array_equal(a, b)


def test_a_file_held_open_by_pyedflib_is_one_clear_line() -> None:
    path = shared_data("signals/eeg/test_edf_overlapping_annotations.edf")
    info = inspect_file(path)
    held = pyedflib.EdfReader(str(path))  # edflib allows one open per process
    try:
        with pytest.raises(DataError) as exc:
            read_frames(info, 0, 10)
        assert "already open" in one_line(exc, path)
    finally:
        held.close()
    assert read_frames(info, 0, 10)[0].shape == (10,)


def test_resampled_window_of_every_shared_record(tmp_path: Path) -> None:
    """Every format through the one entry point: at a record's own rate the window is its samples;
    at another rate it equals resampling a longer read (as for WFDB in test_records.py)."""
    import math

    from modalities.signals.filters import rational_ratio, resample

    signals = shared_data("signals")
    with pytest.warns(UserWarning):
        records = index_records(signals, cache_dir=tmp_path)
    assert {r.format for r in records} >= {"wfdb", "edf", "fif", "csv", "npz"}
    for info in records:
        if set(info.samples_per_frame) != {1}:
            continue  # multi-frequency WFDB: covered in test_records.py
        names = list(info.channels[:3])
        start = info.n_frames // 2
        n = int(2 * info.fs)
        out = read_window_resampled(info, start / info.fs, n / info.fs, names, info.fs)
        raw = np.stack(read_frames(info, start, start + n, names))
        np.testing.assert_array_equal(out, np.nan_to_num(raw).astype(np.float32), err_msg=info.path)
        if info.fs == 100.0:
            continue
        out = read_window_resampled(info, start / info.fs, 2.0, names, 100.0)
        up, down = rational_ratio(info.fs, 100.0)
        margin = down * math.ceil(2 * info.fs / down)  # whole resampling periods: the grids coincide
        longer = np.stack(read_frames(info, start - margin, start + n + margin, names))
        ref = resample(longer, info.fs, 100.0)
        k0 = margin * up // down
        np.testing.assert_allclose(out, ref[:, k0 : k0 + 200], rtol=1e-4,
                                   atol=1e-4 * float(np.abs(longer).max()), err_msg=info.path)


def test_split_fif_is_one_record(tmp_path: Path) -> None:
    x = np.random.default_rng(5).normal(size=(8, 100 * 1000)).astype(np.float32) * 1e-5
    raw = mne.io.RawArray(x, mne.create_info(8, 100.0, "eeg"), verbose="error")
    raw.save(tmp_path / "run_raw.fif", split_size="2MB", buffer_size_sec=1.0, verbose="error")
    assert len(list(tmp_path.glob("run_raw*.fif"))) > 1  # mne wrote continuation parts
    (info,) = index_records(tmp_path, cache_dir=tmp_path / "cache")
    assert (info.name, info.n_frames) == ("run_raw", 100_000)
    late = np.stack(read_frames(info, 90_000, 90_100))  # in a later part
    np.testing.assert_array_equal(late, mne.io.read_raw_fif(tmp_path / "run_raw.fif", verbose="error")
                                  .get_data(start=90_000, stop=90_100))


def test_single_file_beside_a_wfdb_record_of_the_same_name(copy_record) -> None:
    rec = copy_record("macecgdb/test01_00s")
    edf = rec.parent / "test01_00s.edf"
    edf.write_bytes(shared_data("signals/eeg/test_edf_overlapping_annotations.edf").read_bytes())
    assert index_records(edf)[0].format == "edf"
    assert index_records(rec.with_suffix(".hea"))[0].format == "wfdb"
    assert [r.format for r in index_records(rec.parent)] == ["wfdb", "edf"]  # sorted by path (no suffix first)
