"""CSV recordings: rate from time / datetime / rate columns or the caller, regularity rules, window reads.

Rates are checked against heartpy's own estimators and values against numpy's CSV parser.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from modalities.base import DataError
from modalities.signals.formats import read_frames
from modalities.signals.formats.base import NotARecording
from modalities.signals.formats.csv import CSV_MAX_STEP_PERIODS, check_regular_times, inspect_csv
from modalities.signals.index import index_records
from modalities.signals.resampled import read_window_resampled
from tests.conftest import shared_data

with warnings.catch_warnings():  # heartpy imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import heartpy


def one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    return message


@pytest.fixture(scope="module")
def ppg() -> Path:
    return shared_data("signals/ppg_heartpy")


def test_timer_ms_column_rate_and_values(ppg: Path) -> None:
    path = ppg / "data2.csv"
    info = inspect_csv(path)
    timer = heartpy.get_data(str(path), column_name="timer")
    # heartpy divides the sample count by the span, this library the step count: they differ by 1/n.
    n = len(timer)
    assert info.fs == pytest.approx(heartpy.get_samplerate_mstimer(timer) * (n - 1) / n, rel=1e-9)
    assert (info.n_frames, info.channels, info.format) == (n, ("hr",), "csv")
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)
    (x,) = read_frames(info, 1000, 1600, ["hr"])
    np.testing.assert_array_equal(x, values[1000:1600])
    assert "timer" in info.comments[0]


def test_datetime_column_with_clock_jitter_is_accepted(ppg: Path) -> None:
    path = ppg / "data3.csv"
    info = inspect_csv(path)
    stamps = heartpy.get_data(str(path), column_name="datetime")
    n = len(stamps)
    rate = heartpy.get_samplerate_datetime(stamps, timeformat="%Y-%m-%d %H:%M:%S.%f")
    assert info.fs == pytest.approx(rate * (n - 1) / n, rel=1e-6)
    assert info.fs == pytest.approx(100.42, abs=0.01)  # SOURCES.md's figure, computed by heartpy
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)
    assert info.n_frames == values.size
    (x,) = read_frames(info, info.n_frames - 500, info.n_frames, ["hr"])
    np.testing.assert_array_equal(x, values[-500:])


def test_single_column_needs_the_rate(ppg: Path, tmp_path: Path) -> None:
    path = ppg / "data.csv"
    with pytest.raises(NotARecording) as exc:
        inspect_csv(path)
    assert "fs" in one_line(exc, path)
    with pytest.raises(DataError) as exc:
        index_records(path)  # a single file: an error, not a warning
    one_line(exc, path)
    info = index_records(path, fs=100.0)[0]
    values = np.loadtxt(path)
    assert (info.fs, info.n_frames, info.channels) == (100.0, values.size, ("value",))
    np.testing.assert_array_equal(read_frames(info, 0, values.size)[0], values)
    # At the native rate a resampled window is the file's samples.
    out = read_window_resampled(info, 2.0, 3.0, ["value"], 100.0)
    np.testing.assert_array_equal(out[0], values[200:500].astype(np.float32))


def test_folder_index_skips_csv_without_rate_with_a_warning(ppg: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="data.csv"):
        records = index_records(ppg, cache_dir=tmp_path)
    assert [r.name for r in records] == ["data2", "data3"]
    with pytest.warns(UserWarning, match="data.csv"):  # said again when served from the cache
        assert index_records(ppg, cache_dir=tmp_path) == records
    with_fs = index_records(ppg, cache_dir=tmp_path, fs=100.0)  # fs is part of the cache key
    assert [r.name for r in with_fs] == ["data", "data2", "data3"]
    assert with_fs[1:] == records  # files with a time column ignore fs


def _write(path: Path, t: np.ndarray, x: np.ndarray, header: str = "time_s,ppg") -> Path:
    lines = [header] + [f"{a:.6f},{b:.4f}" for a, b in zip(t, x)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_regular_seconds_and_rate_column(tmp_path: Path) -> None:
    t = np.arange(500) / 250.0
    x = np.sin(2 * np.pi * 3 * t)
    info = inspect_csv(_write(tmp_path / "s.csv", t, x))
    assert info.fs == pytest.approx(250.0, rel=1e-9) and info.channel_types == ("ppg",)
    rate = tmp_path / "rate.csv"
    rate.write_text("fs;pleth;ecg\n" + "".join(f"64;{v:.3f};{-v:.3f}\n" for v in x))
    info = inspect_csv(rate)
    assert (info.fs, info.channels, info.channel_types) == (64.0, ("pleth", "ecg"), ("ppg", "ecg"))
    pleth, ecg = read_frames(info, 10, 20)
    np.testing.assert_allclose(pleth, np.round(x[10:20], 3))
    np.testing.assert_allclose(ecg, -np.round(x[10:20], 3))


@pytest.mark.parametrize("defect", ["gap", "backwards", "rate_change", "text"])
def test_irregular_csv_is_rejected_in_one_line(tmp_path: Path, defect: str) -> None:
    t = np.arange(2000) / 100.0
    x = np.cos(t)
    if defect == "gap":
        t[1000:] += 1.0  # one second missing
    elif defect == "backwards":
        t[700] = t[690]
    elif defect == "rate_change":
        t = np.concatenate([np.arange(1000) / 100.0, 10.0 + np.arange(1000) / 80.0])
    path = _write(tmp_path / f"{defect}.csv", t, x)
    if defect == "text":
        path.write_text(path.read_text().replace("\n0.500000,", "\n0.500000,n/a\n0.51,", 1))
    with pytest.raises(DataError) as exc:
        inspect_csv(path)
    message = one_line(exc, path)
    if defect != "text":
        assert "irregular sampling" in message
    with pytest.raises(DataError) as exc:
        index_records(tmp_path, cache_dir=tmp_path / "cache") if defect != "text" else inspect_csv(path)
    one_line(exc, path)


def test_regularity_thresholds() -> None:
    fs = 100.0
    t = np.arange(1000) / fs
    assert check_regular_times("x", t) == pytest.approx(fs)
    ok = t.copy()
    ok[500:] += (CSV_MAX_STEP_PERIODS - 2) / fs  # one long step, below the gap limit
    check_regular_times("x", ok)
    bad = t.copy()
    bad[500:] += (CSV_MAX_STEP_PERIODS + 1) / fs
    with pytest.raises(DataError, match="gap"):
        check_regular_times("x", bad)
    quantised = np.floor(t / 0.0156) * 0.0156  # a 15.6 ms clock tick: repeated stamps
    assert check_regular_times("x", quantised) == pytest.approx(fs, rel=0.02)


def test_yasa_npz_and_txt_demo_arrays(tmp_path: Path) -> None:
    sleep = shared_data("signals/sleep")
    npz = sleep / "data_EOGs_REM_256Hz.npz"
    with np.load(npz) as z:
        data, sf, chan = z["data"], float(z["sf"]), [str(c) for c in z["chan"]]
    (info,) = index_records(npz)
    assert (info.format, info.fs, info.channels, info.n_frames) == ("npz", sf, tuple(chan), data.shape[1])
    assert info.channel_types == ("eog", "eog")  # LOC / ROC
    np.testing.assert_array_equal(np.stack(read_frames(info, 5000, 5256)), data[:, 5000:5256])
    # Plain text columns: read as a single file with the rate its name states; folder scans skip them.
    for name, rate in [("data_N2_spindles_15sec_200Hz.txt", 200.0), ("data_N3_no-spindles_30sec_100Hz.txt", 100.0)]:
        (info,) = index_records(sleep / name, fs=rate)
        values = np.loadtxt(sleep / name)
        assert (info.fs, info.n_frames, info.channels) == (rate, values.size, ("value",))
        np.testing.assert_array_equal(read_frames(info, 0, values.size)[0], values)
    records = index_records(sleep, cache_dir=tmp_path)
    assert [r.name for r in records] == ["data_EOGs_REM_256Hz"]  # hypnograms hold no signal


def test_metadata_tables_beside_records_are_skipped_with_a_warning(copy_record) -> None:
    rec = copy_record("macecgdb/test01_00s")
    (rec.parent / "database.csv").write_text("ecg_id,patient_id,report\n1,15709,sinus rhythm\n2,13243,normal\n")
    with pytest.warns(UserWarning, match="database.csv.*'report' holds 'sinus rhythm'"):
        records = index_records(rec.parent)
    assert [(r.format, r.name) for r in records] == [("wfdb", "test01_00s")]
    with pytest.raises(DataError) as exc:  # named on its own, it is an error
        index_records(rec.parent / "database.csv")
    one_line(exc, rec.parent / "database.csv")


def test_a_folder_of_csv_without_rate_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "ppg"
    folder.mkdir()
    (folder / "raw.csv").write_text("".join(f"{v}\n" for v in range(100)))
    with pytest.raises(DataError) as exc:
        index_records(folder, cache_dir=tmp_path / "cache")
    assert "raw.csv: no time or sample-rate column" in one_line(exc, folder)
    assert index_records(folder, cache_dir=tmp_path / "cache", fs=50.0)[0].duration_s == 2.0
