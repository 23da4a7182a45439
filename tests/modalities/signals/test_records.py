"""WFDB header index and window reads, checked against wfdb.rdrecord on the shared real records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import wfdb
import wfdb.io.util

from modalities.base import DataError
from modalities.signals import index as index_module
from modalities.signals.filters import resample
from modalities.signals.formats.wfdb import read_header, read_wfdb_window
from modalities.signals.index import index_records
from modalities.signals.record import RecordInfo
from modalities.signals.resampled import read_window_resampled

EXPECTED_RECORDS = (
    "challenge2015/a103l",
    "macecgdb/test01_00s",
    "mimicdb/03700181",
    "mitdb/100",
    "ptbdb/s0010_re",
)


def assert_one_line_error(exc: pytest.ExceptionInfo, starts_with: Path | str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(str(starts_with)), message
    return message


# ---------------------------------------------------------------------------------------- headers


def test_headers_of_every_shared_record(signals_dir: Path) -> None:
    expected = {
        # name: (fs, n_frames, channels, samples_per_frame, units)
        "mitdb/100": (360.0, 650000, ("MLII", "V5"), (1, 1), ("mV", "mV")),
        "ptbdb/s0010_re": (
            1000.0, 38400,
            ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6", "vx", "vy", "vz"),
            (1,) * 15, ("mV",) * 15,
        ),
        "challenge2015/a103l": (250.0, 82500, ("II", "V", "PLETH"), (1, 1, 1), ("mV", "mV", "NU")),
        "mimicdb/03700181": (125.0, 75000, ("MCL1", "ABP", "RESP"), (4, 1, 1), ("mV", "mmHg", "mV")),
        "macecgdb/test01_00s": (500.0, 4000, ("ECG 1", "ECG 2", "ECG 3", "ECG 4"), (1,) * 4, ("mV",) * 4),
    }
    for rel, (fs, n, channels, spf, units) in expected.items():
        info = read_header(signals_dir / rel)
        assert info.path == str(signals_dir / rel)
        assert info.name == Path(rel).name
        assert (info.fs, info.n_frames, info.channels, info.samples_per_frame, info.units) == (
            fs, n, channels, spf, units,
        ), rel
        assert info.n_segments == 1
        assert info.duration_s == pytest.approx(n / fs)

    mitdb = read_header(signals_dir / "mitdb/100")
    assert "69 M 1085 1629 x1" in mitdb.comments  # after the leading comment line
    assert mitdb.duration_s == pytest.approx(1805.5556, abs=1e-3)
    mimic = read_header(signals_dir / "mimicdb/03700181")
    assert mimic.channel_fs("MCL1") == 500.0 and mimic.channel_fs("ABP") == 125.0
    assert read_header(signals_dir / "macecgdb/test01_00s").duration_s == 8.0
    assert read_header(signals_dir / "challenge2015/a103l").comments == ("Asystole", "False alarm")


def test_read_header_accepts_any_record_file(signals_dir: Path) -> None:
    base = read_header(signals_dir / "challenge2015/a103l")
    for suffix in (".hea", ".mat"):
        assert read_header(str(signals_dir / "challenge2015/a103l") + suffix) == base
    assert read_header(signals_dir / "mitdb/100.dat") == read_header(signals_dir / "mitdb/100")


def test_missing_header(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_header(tmp_path / "nothing")
    assert_one_line_error(exc, tmp_path / "nothing.hea")
    with pytest.raises(DataError) as exc:
        index_records(tmp_path / "nothing")
    assert_one_line_error(exc, tmp_path / "nothing")


def test_channel_fs_unknown_channel(signals_dir: Path) -> None:
    info = read_header(signals_dir / "mitdb/100")
    with pytest.raises(DataError) as exc:
        info.channel_fs("V1")
    assert "V1" in assert_one_line_error(exc, info.path)


# ------------------------------------------------------------------------------------------ reads


def _windows(n_frames: int, fs: float) -> list[tuple[int, int]]:
    w = min(n_frames, int(2.5 * fs) + 7)
    mid = n_frames // 2 - w // 2 + 3
    return [(0, w), (mid, mid + w), (n_frames - w, n_frames), (n_frames - 1, n_frames), (5, 6)]


def test_window_equals_rdrecord(signals_dir: Path, wfdb_record: str) -> None:
    path = signals_dir / wfdb_record
    info = read_header(path)
    for start, stop in _windows(info.n_frames, info.fs):
        ours = read_wfdb_window(info, start, stop)
        expanded = wfdb.rdrecord(str(path), sampfrom=start, sampto=stop, smooth_frames=False)
        smooth = wfdb.rdrecord(str(path), sampfrom=start, sampto=stop)
        assert len(ours) == len(info.channels)
        for ch, x in enumerate(ours):
            assert x.dtype == np.float64
            assert x.shape == ((stop - start) * info.samples_per_frame[ch],)
            assert np.array_equal(x, expanded.e_p_signal[ch], equal_nan=True), (wfdb_record, ch, start)
            if info.samples_per_frame[ch] == 1:
                assert np.array_equal(x, smooth.p_signal[:, ch], equal_nan=True)
            else:  # rdrecord's smoothed value is the frame mean, taken on the digital samples
                frames = x.reshape(stop - start, info.samples_per_frame[ch]).mean(axis=1)
                step = 1.0 / smooth.adc_gain[ch]
                np.testing.assert_allclose(frames, smooth.p_signal[:, ch], rtol=0, atol=step)
        # A subset in another order returns the same arrays in the requested order.
        subset = list(reversed(info.channels))[:2]
        picked = read_wfdb_window(info, start, stop, subset)
        for name, x in zip(subset, picked):
            assert np.array_equal(x, ours[info.channels.index(name)], equal_nan=True)


def test_multifrequency_channel_is_expanded(signals_dir: Path) -> None:
    info = read_header(signals_dir / "mimicdb/03700181")
    mcl1, abp = read_wfdb_window(info, 1000, 1125, ["MCL1", "ABP"])
    assert mcl1.shape == (500,) and abp.shape == (125,)
    # The 4 samples of a frame are distinct measurements, not a repeated value.
    assert np.mean(np.diff(mcl1.reshape(125, 4), axis=1) != 0) > 0.5


def test_reads_only_the_window(signals_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = read_header(signals_dir / "mitdb/100")
    file_size = (signals_dir / "mitdb/100.dat").stat().st_size
    counted: list[int] = []
    real_fromfile = wfdb.io.util.fromfile

    def counting_fromfile(fileobj, dtype, count=-1):
        out = real_fromfile(fileobj, dtype, count)
        counted.append(out.nbytes)
        return out

    monkeypatch.setattr(wfdb.io.util, "fromfile", counting_fromfile)

    # The counter sees a whole-record read, so a small number below is meaningful.
    read_wfdb_window(info, 0, info.n_frames, ["MLII"])
    assert sum(counted) >= file_size
    counted.clear()

    def rchar() -> int | None:
        try:
            return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])
        except (OSError, IndexError):
            return None

    before = rchar()
    (x,) = read_wfdb_window(info, 300_000, 300_360, ["V5"])  # 1 s of a 30 min record
    after = rchar()
    assert x.shape == (360,)
    assert 0 < sum(counted) <= 2 * 360 * 3  # 2 channels x 1.5 bytes, with slack
    if before is not None:  # every byte the process read, header and buffering included
        assert after - before < file_size / 20


def test_unknown_channel_and_out_of_range(signals_dir: Path) -> None:
    info = read_header(signals_dir / "mitdb/100")
    with pytest.raises(DataError) as exc:
        read_wfdb_window(info, 0, 10, ["MLII", "aVF"])
    assert "aVF" in assert_one_line_error(exc, info.path)
    for start, stop in [(-1, 10), (649_999, 650_001), (10, 10), (20, 10)]:
        with pytest.raises(DataError) as exc:
            read_wfdb_window(info, start, stop)
        assert "outside" in assert_one_line_error(exc, info.path)
    for start_s, dur in [(-1.0, 1.0), (1800.0, 10.0), (0.0, 0.0)]:
        with pytest.raises(DataError) as exc:
            read_window_resampled(info, start_s, dur, ["MLII"], 500.0)
        assert_one_line_error(exc, info.path)


def test_resampled_window_keeps_values_and_timing(signals_dir: Path) -> None:
    # MCL1 is already at 500 Hz: resampling is the identity, so the window is the file's samples.
    info = read_header(signals_dir / "mimicdb/03700181")
    out = read_window_resampled(info, 12.0, 4.0, ["MCL1", "RESP"], 500.0)
    assert out.shape == (2, 2000) and out.dtype == np.float32
    (mcl1,) = read_wfdb_window(info, 1500, 2000, ["MCL1"])
    assert np.array_equal(out[0], np.nan_to_num(mcl1).astype(np.float32))
    # RESP (125 Hz) upsampled 4x: every 4th output sample is close to the file's sample there.
    (resp,) = read_wfdb_window(info, 1500, 2000, ["RESP"])
    np.testing.assert_allclose(out[1, ::4], resp, atol=0.05 * np.ptp(resp))

    # mitdb 360 -> 500 Hz: equal to resampling a longer read and taking the same instants.
    info = read_header(signals_dir / "mitdb/100")
    out = read_window_resampled(info, 100.0, 2.0, ["MLII"], 500.0)
    (long,) = read_wfdb_window(info, 360 * 90, 360 * 110, ["MLII"])
    ref = resample(long, 360, 500)[500 * 10 : 500 * 12]
    np.testing.assert_allclose(out[0], ref, atol=1e-4)


def test_resampled_window_timing_on_a_sine(tmp_path: Path) -> None:
    fs, f0 = 360, 7.0
    t = np.arange(60 * fs) / fs
    sig = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t)], axis=1)
    wfdb.wrsamp("sine", fs=fs, units=["mV", "mV"], sig_name=["s", "c"], p_signal=sig,
                fmt=["16", "16"], adc_gain=[10000.0, 10000.0], baseline=[0, 0], write_dir=str(tmp_path))
    info = read_header(tmp_path / "sine")
    for start_s in (0.0, 3.3, 57.0):  # at the start, inside, at the end of the record
        out = read_window_resampled(info, start_s, 3.0, ["c", "s"], 500.0)
        tt = start_s + np.arange(1500) / 500.0
        inner = slice(20, -20)  # resample_poly's edge transient at the record's ends
        np.testing.assert_allclose(out[0, inner], np.cos(2 * np.pi * f0 * tt)[inner], atol=2e-3)
        np.testing.assert_allclose(out[1, inner], np.sin(2 * np.pi * f0 * tt)[inner], atol=2e-3)


# ----------------------------------------------------------------------------------- bad records


def test_missing_dat(copy_record) -> None:
    rec = copy_record("mitdb/100")
    os.remove(rec.with_suffix(".dat"))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "missing" in assert_one_line_error(exc, rec.with_suffix(".dat"))
    with pytest.raises(DataError) as exc:
        index_records(rec.parent)
    assert_one_line_error(exc, rec.with_suffix(".dat"))


def test_truncated_dat_detected_by_stat_only(copy_record, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = copy_record("mitdb/100")
    dat = rec.with_suffix(".dat")
    with open(dat, "r+b") as f:
        f.truncate(1_000_000)

    def no_data_reads(*args, **kwargs):
        raise AssertionError("indexing must not read samples")

    monkeypatch.setattr(wfdb, "rdrecord", no_data_reads)
    monkeypatch.setattr(wfdb.io.util, "fromfile", no_data_reads)
    with pytest.raises(DataError) as exc:
        index_records(rec.parent)
    message = assert_one_line_error(exc, dat)
    assert "truncated" in message and "1000000" in message


def test_truncated_mat(copy_record) -> None:
    rec = copy_record("challenge2015/a103l")
    mat = rec.with_suffix(".mat")
    with open(mat, "r+b") as f:
        f.truncate(mat.stat().st_size - 2)
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "truncated" in assert_one_line_error(exc, mat)


def test_header_length_disagrees_with_data(copy_record) -> None:
    rec = copy_record("macecgdb/test01_00s")
    hea = rec.with_suffix(".hea")
    text = hea.read_text()
    hea.write_text(text.replace("test01_00s 4 500 4000", "test01_00s 4 500 4100"))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "4100 frames" in assert_one_line_error(exc, rec.with_suffix(".dat"))
    # A header that declares fewer frames than the file holds disagrees with it too.
    hea.write_text(text.replace("test01_00s 4 500 4000", "test01_00s 4 500 3000"))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "disagrees" in assert_one_line_error(exc, rec.with_suffix(".dat"))


def test_header_format_disagrees_with_data(copy_record) -> None:
    rec = copy_record("mitdb/100")
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("100.dat 212", "100.dat 16"))  # 2 bytes/sample, not 1.5
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert_one_line_error(exc, rec.with_suffix(".dat"))


def test_malformed_header(tmp_path: Path) -> None:
    (tmp_path / "bad.hea").write_text("bad two 360 100\nbad.dat 16 200 0 0 0 0 0 x\n")
    with pytest.raises(DataError) as exc:
        read_header(tmp_path / "bad")
    assert_one_line_error(exc, tmp_path / "bad.hea")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no records here")
    with pytest.raises(DataError) as exc:
        index_records(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path}: no recordings found (.hea, .edf")


# ------------------------------------------------------------------------------------------ index


def test_index_finds_exactly_the_shared_records(signals_dir: Path, tmp_path: Path) -> None:
    # Other formats (EDF, FIF, CSV) are indexed too; tests/modalities/signals/test_readers_*.py cover them.
    records = [r for r in index_records(signals_dir, cache_dir=tmp_path) if r.format == "wfdb"]
    assert [str(Path(r.path).relative_to(signals_dir)) for r in records] == list(EXPECTED_RECORDS)
    assert all(isinstance(r, RecordInfo) for r in records)
    assert [r.path for r in records] == sorted(r.path for r in records)
    assert records == [read_header(r.path) for r in records]
    # The reads of every record are covered by the parametrised test over the same folder.
    assert sorted(str(p.relative_to(signals_dir).with_suffix("")) for p in signals_dir.glob("**/*.hea")) == list(
        EXPECTED_RECORDS
    )


def test_index_single_record(signals_dir: Path) -> None:
    assert index_records(signals_dir / "mitdb/100.hea") == [read_header(signals_dir / "mitdb/100")]


def test_index_cache_is_written_and_reused(
    signals_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = index_records(signals_dir, cache_dir=tmp_path)
    caches = list(tmp_path.glob("*.json"))
    assert len(caches) == 1
    payload = json.loads(caches[0].read_text())
    assert sum(r["format"] == "wfdb" for r in payload["records"]) == len(EXPECTED_RECORDS)

    def no_header_reads(*args, **kwargs):
        raise AssertionError("the cached index must not re-read headers")

    monkeypatch.setattr(index_module, "read_header", no_header_reads)
    monkeypatch.setattr(index_module, "inspect_record", no_header_reads)
    monkeypatch.setattr(wfdb, "rdheader", no_header_reads)
    assert index_records(signals_dir, cache_dir=tmp_path) == first


def test_index_cache_defaults(copy_record, tmp_path: Path, monkeypatch) -> None:
    # The index never goes into the data folder, writable or not: $MODALITIES_CACHE, else ~/.cache/modalities.
    rec = copy_record("macecgdb/test01_00s")
    before = sorted(p.name for p in rec.parent.iterdir())
    cache = tmp_path / "project_cache"
    monkeypatch.setenv("MODALITIES_CACHE", str(cache))
    index_records(rec.parent)
    assert sorted(p.name for p in rec.parent.iterdir()) == before
    assert [p.relative_to(cache).parts[:1] for p in cache.rglob("*.json")] == [("signals",)]
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MODALITIES_CACHE", raising=False)
    index_records(rec.parent)
    assert len(list((home / ".cache" / "modalities" / "signals").rglob("*.json"))) == 1
    assert sorted(p.name for p in rec.parent.iterdir()) == before


def test_index_cache_invalidated_when_a_header_changes(copy_record, monkeypatch) -> None:
    rec = copy_record("macecgdb/test01_00s")
    copy_record("mimicdb/03700181", dest=rec.parent)
    root = rec.parent
    assert [r.name for r in index_records(root)] == ["03700181", "test01_00s"]

    calls: list[str] = []
    real_inspect = index_module.inspect_record

    def counting_inspect(record):
        calls.append(Path(record).name)
        return real_inspect(record)

    monkeypatch.setattr(index_module, "inspect_record", counting_inspect)
    index_records(root)
    assert calls == []  # cached

    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text() + "# edited\n")
    updated = index_records(root)
    assert calls  # rebuilt
    assert updated[1].comments[-1] == "edited"

    calls.clear()
    (root / "extra").mkdir()
    copy_record("mitdb/100", dest=root / "extra")
    assert [r.name for r in index_records(root)] == ["03700181", "100", "test01_00s"]

    # A signal file truncated after indexing is caught on the next call, not served from cache.
    with open(rec.with_suffix(".dat"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError) as exc:
        index_records(root)
    assert_one_line_error(exc, rec.with_suffix(".dat"))


# ------------------------------------------------------------------------------ multi-segment


def test_multisegment_records(multisegment, tmp_path: Path) -> None:
    folder, signals = multisegment
    records = index_records(folder, cache_dir=tmp_path / "cache")
    # Segments (fa, fb, va, vb) and the layout header (vlay) are parts, not records.
    assert [r.name for r in records] == ["fixed", "variable"]
    fixed, variable = records
    assert (fixed.n_frames, fixed.n_segments, fixed.channels, fixed.samples_per_frame) == (
        800, 2, ("I", "II"), (1, 2),
    )
    assert fixed.comments == ("fixed layout",)
    assert (variable.n_frames, variable.n_segments, variable.channels) == (600, 4, ("I", "II"))

    for info in records:
        for start, stop in [(0, 50), (250, 350), (280, 420), (info.n_frames - 60, info.n_frames)]:
            ours = read_wfdb_window(info, start, stop)
            ref = wfdb.rdrecord(info.path, sampfrom=start, sampto=stop, smooth_frames=False)
            for ch, name in enumerate(info.channels):
                spf = info.samples_per_frame[ch]
                assert np.array_equal(ours[ch], ref.e_p_signal[ch], equal_nan=True)
                written = signals[f"{info.name}/{name}"][start * spf : stop * spf]
                np.testing.assert_allclose(ours[ch], written, rtol=0, atol=1e-12)

    # The gap and the channel missing from a segment read as NaN and resample to zeros.
    out = read_window_resampled(variable, 2.0, 3.0, ["I", "II"], 100.0)  # frames 200..500
    assert np.all(out[0, 100:] == 0) and np.all(out[1, 100:200] == 0)
    np.testing.assert_array_equal(out[0, :100], signals["variable/I"][200:300].astype(np.float32))
    np.testing.assert_array_equal(out[1, 200:], signals["variable/II"][400:500].astype(np.float32))


def test_multisegment_missing_segment(multisegment) -> None:
    folder, _ = multisegment
    os.remove(folder / "fb.dat")
    with pytest.raises(DataError) as exc:
        read_header(folder / "fixed")
    assert_one_line_error(exc, folder / "fb.dat")
    os.remove(folder / "vb.hea")
    with pytest.raises(DataError) as exc:
        read_header(folder / "variable")
    assert_one_line_error(exc, folder / "vb.hea")
