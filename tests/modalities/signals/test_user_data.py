"""A user's own data on the real records (issue 22): corrupt headers end in one line naming the file, nothing is
written into a data folder, and records shorter than a window are named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modalities.base import DataError, cache_root, data_cache_dir
from modalities.signals.formats.wfdb import read_header
from modalities.signals.index import index_records
from modalities.signals.record import RecordInfo
from modalities.signals.windows import SignalWindows
from tests.modalities.signals.helpers import (copy_files, make_read_only, make_writable, multisegment_cut,
                                              snapshot)

REPO = Path(__file__).resolve().parents[3]


def one_line(exc: pytest.ExceptionInfo, starts_with: Path | str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    assert message.startswith(str(starts_with)), message
    return message


# ------------------------------------------------------------------------------------------ corrupt headers

MITDB_RECORD_LINE = "100 2 360 650000"

# (name, header edit, phrase the message must hold); every edit is of the real mitdb/100 header
CORRUPTIONS = [
    ("fs zero", (MITDB_RECORD_LINE, "100 2 0 650000"), "sampling frequency '0' is not a positive number"),
    ("fs negative", (MITDB_RECORD_LINE, "100 2 -360 650000"), "sampling frequency '-360'"),
    ("fs text", (MITDB_RECORD_LINE, "100 2 abc 650000"), "sampling frequency 'abc'"),
    ("fs nan", (MITDB_RECORD_LINE, "100 2 nan 650000"), "sampling frequency 'nan'"),
    ("fs inf", (MITDB_RECORD_LINE, "100 2 inf 650000"), "sampling frequency 'inf'"),
    ("counter frequency zero", (MITDB_RECORD_LINE, "100 2 360/0 650000"), "counter frequency '360/0'"),
    ("too many signals declared", (MITDB_RECORD_LINE, "100 3 360 650000"),
     "declares 3 signal(s) but 2 signal line(s) follow"),
    ("too few signals declared", (MITDB_RECORD_LINE, "100 1 360 650000"),
     "declares 1 signal(s) but 2 signal line(s) follow"),
    ("no signals declared", (MITDB_RECORD_LINE, "100 0 360 650000"), "declares 0 signal(s)"),
    ("negative length", (MITDB_RECORD_LINE, "100 2 360 -5"), "record length '-5'"),
    ("unknown format", ("100.dat 212 200 11 1024 995", "100.dat 999 200 11 1024 995"), "signal format 999"),
    ("zero samples per frame", ("100.dat 212 200 11 1024 995", "100.dat 212x0 200 11 1024 995"),
     "0 samples per frame"),
    ("gain not a number", ("100.dat 212 200 11 1024 995", "100.dat 212 abc 11 1024 995"), "gain 'abc'"),
]


@pytest.mark.parametrize("name, edit, phrase", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_mitdb_header_is_one_line_naming_the_header(copy_record, name, edit, phrase) -> None:
    rec = copy_record("mitdb/100")
    hea = rec.with_suffix(".hea")
    text = hea.read_text()
    assert edit[0] in text
    hea.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert phrase in one_line(exc, hea)
    with pytest.raises(DataError) as exc:  # the folder scan stops on it too
        index_records(rec.parent)
    assert phrase in one_line(exc, hea)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"], ids=["empty", "comment", "blank"])
def test_empty_header(copy_record, text: str) -> None:
    rec = copy_record("mitdb/100")
    rec.with_suffix(".hea").write_text(text)
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "empty WFDB header" in one_line(exc, rec.with_suffix(".hea"))


def test_fs_zero_in_multifrequency_and_mat_records(copy_record) -> None:
    # mimicdb: 212x4 (500 Hz) + 125 Hz channels; challenge2015: a .mat signal file with a byte offset
    for rel, line in (("mimicdb/03700181", "03700181 3 125 75000"), ("challenge2015/a103l", "a103l 3 250 82500")):
        rec = copy_record(rel)
        hea = rec.with_suffix(".hea")
        hea.write_text(hea.read_text().replace(line, line.replace(f" {line.split()[2]} ", " 0 "), 1))
        with pytest.raises(DataError) as exc:
            index_records(rec.parent)
        assert "sampling frequency '0'" in one_line(exc, hea)


def test_signal_count_mismatch_in_the_mat_record(copy_record) -> None:
    rec = copy_record("challenge2015/a103l")
    hea = rec.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(line for line in lines if not line.endswith("PLETH")) + "\n")  # 3 declared, 2 lines
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "declares 3 signal(s) but 2 signal line(s)" in one_line(exc, hea)


def test_signal_file_that_is_a_folder(copy_record) -> None:
    rec = copy_record("mitdb/100")
    dat = rec.with_suffix(".dat")
    dat.unlink()
    dat.mkdir()
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "not a regular file" in one_line(exc, dat)


def test_truncated_and_missing_dat_of_a_multisegment_cut(signals_dir: Path, tmp_path: Path) -> None:
    rec = multisegment_cut(signals_dir / "mitdb/100", tmp_path / "cut", "short16")
    second = tmp_path / "cut" / "short16_2.dat"
    with open(second, "r+b") as f:
        f.truncate(second.stat().st_size - 10)
    with pytest.raises(DataError) as exc:
        index_records(rec.parent)
    assert "truncated" in one_line(exc, second)
    second.unlink()
    with pytest.raises(DataError) as exc:
        index_records(rec.parent)
    assert "signal file missing" in one_line(exc, second)


def test_multisegment_header_corruptions(signals_dir: Path, tmp_path: Path) -> None:
    rec = multisegment_cut(signals_dir / "mitdb/100", tmp_path / "cut", "short16")
    hea = rec.with_suffix(".hea")
    good = hea.read_text()
    hea.write_text(good.replace("short16/2", "short16/3", 1))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "declares 3 segment(s) but 2 segment line(s)" in one_line(exc, hea)
    hea.write_text(good.replace("short16/2 2 360", "short16/2 2 0", 1))
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "sampling frequency '0'" in one_line(exc, hea)
    hea.write_text(good.replace("short16/2 2 360", "short16/2 2 250", 1))  # segments say 360 Hz
    seg = tmp_path / "cut" / "short16_1.hea"
    with pytest.raises(DataError) as exc:
        read_header(rec)
    assert "segment sampled at 360 Hz" in one_line(exc, seg)


def test_record_info_refuses_a_rate_that_is_not_positive() -> None:
    for fs in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(DataError) as exc:
            RecordInfo(path="/data/x", name="x", fs=fs, n_frames=10, channels=("I",), units=("mV",),
                       samples_per_frame=(1,), n_segments=1, comments=())
        assert "sampling frequency" in one_line(exc, "/data/x")


def test_cli_fs_zero_ends_in_one_line(copy_record, tmp_path: Path) -> None:
    rec = copy_record("mitdb/100")
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace(MITDB_RECORD_LINE, "100 2 0 650000"))
    env = {**os.environ, "MODALITIES_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "ecg", "--data", str(rec.parent), "--max-steps", "1",
         "--out", str(tmp_path / "runs"), "--set", "train.threads=1", "--set", "train.num_workers=0"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [f"error: {hea}: sampling frequency '0' is not a positive number (record line '100 2 0 650000')"]
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------- nothing written into --data

def test_read_only_data_folder_is_never_written(signals_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from modalities.ecg import build_dataset as ecg_dataset
    from modalities.ppg import build_dataset as ppg_dataset

    cache = tmp_path / "cache"
    monkeypatch.setenv("MODALITIES_CACHE", str(cache))
    archive = tmp_path / "archive"
    copy_files(signals_dir / "mitdb/100", archive / "mitdb")
    copy_files(signals_dir / "challenge2015/a103l", archive / "challenge2015")
    multisegment_cut(signals_dir / "mitdb/100", archive / "cut", "short16")
    make_read_only(archive)
    before = snapshot(archive)
    try:
        ecg = ecg_dataset({"path": str(archive)}, "train", 2)
        assert ecg[0, 3]["views"].shape == (2, 12, 5000)
        ecg_dataset({"path": str(archive)}, "val", 0)[0]
        ppg = ppg_dataset({"path": str(archive), "fs": 64, "window_s": 60.0}, "train", 2)
        assert ppg[0, 3]["views"].shape == (2, 1, 3840)
        assert snapshot(archive) == before  # not a file added, changed or removed, hidden ones included
        index = data_cache_dir("signals", archive) / "index.json"
        assert index.is_file() and index.is_relative_to(cache)
        assert json.loads(index.read_text())["root"] == str(archive.resolve())
    finally:
        make_writable(archive)


def test_writable_data_folder_is_not_written_either(copy_record, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    rec = copy_record("mimicdb/03700181")
    before = snapshot(rec.parent)
    index_records(rec.parent)
    assert snapshot(rec.parent) == before
    assert len(list((tmp_path / "cache" / "signals").rglob("index.json"))) == 1


def test_two_archives_with_the_same_name_never_share_an_index(signals_dir: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    a = copy_files(signals_dir / "mitdb/100", tmp_path / "site_a" / "data").parent
    b = copy_files(signals_dir / "ptbdb/s0010_re", tmp_path / "site_b" / "data").parent
    assert data_cache_dir("signals", a) != data_cache_dir("signals", b)
    assert data_cache_dir("signals", a).name.startswith("data-")
    assert [r.name for r in index_records(a)] == ["100"]
    assert [r.name for r in index_records(b)] == ["s0010_re"]
    assert [r.name for r in index_records(a)] == ["100"]  # from its own cache, not b's
    assert len(list((tmp_path / "cache" / "signals").rglob("index.json"))) == 2
    # a symlink to an archive is the same archive: one index, record paths under the path given
    link = tmp_path / "link"
    link.symlink_to(a)
    assert data_cache_dir("signals", link) == data_cache_dir("signals", a)
    assert [r.path for r in index_records(link)] == [str(link / "100")]
    assert len(list((tmp_path / "cache" / "signals").rglob("index.json"))) == 2


def test_index_in_the_cache_is_invalidated_when_a_file_changes(copy_record, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "cache"))
    rec = copy_record("challenge2015/a103l")
    assert index_records(rec.parent)[0].n_frames == 82500
    mat = rec.with_suffix(".mat")
    with open(mat, "r+b") as f:
        f.truncate(mat.stat().st_size - 2)
    with pytest.raises(DataError) as exc:
        index_records(rec.parent)
    assert "truncated" in one_line(exc, mat)


def test_cache_root_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODALITIES_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("MODALITIES_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "modalities"


# ---------------------------------------------------------------------------------- records shorter than a window

def _ecg_alias(name: str) -> str | None:
    return {"MLII": "II", "V5": "V5"}.get(name)


def test_a_16_s_multisegment_record_gives_one_named_window(signals_dir: Path, tmp_path: Path) -> None:
    rec = multisegment_cut(signals_dir / "mitdb/100", tmp_path / "cut", "short16")
    [info] = index_records(rec.parent)
    assert info.n_segments == 2 and info.duration_s == 16.0
    ds = SignalWindows([info], channels=("II", "V5"), fs=500.0, window_s=10.0, channel_aliases=_ecg_alias)
    assert len(ds) == 1 and ds.n_records == 1  # the 14.4 s train part holds one 10 s window
    assert ds.summary() == "1 train window of 10 s from 1 record (short16)"
    with pytest.raises(DataError) as exc:  # the 1.6 s val part holds none
        SignalWindows([info], channels=("II", "V5"), fs=500.0, window_s=10.0, channel_aliases=_ecg_alias,
                      split="val")
    message = one_line(exc, info.path)
    assert "no val window" in message and "1.6 s" in message and "10 s window" in message
    with pytest.raises(DataError) as exc:  # longer than the record: no training window at all
        SignalWindows([info], channels=("II", "V5"), fs=500.0, window_s=60.0, channel_aliases=_ecg_alias)
    message = one_line(exc, info.path)
    assert "no train window" in message and "14.4 s" in message and "60 s window" in message
    assert "data.window_s" in message


def test_short_records_beside_long_ones_are_named_in_one_warning(signals_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    copy_files(signals_dir / "mitdb/100", folder / "mitdb")
    multisegment_cut(signals_dir / "mitdb/100", folder / "cut", "short16")
    multisegment_cut(signals_dir / "mitdb/100", folder / "cut", "short12", seconds=(6.0, 6.0))
    records = index_records(folder)
    assert [r.name for r in records] == ["short12", "short16", "100"]
    with pytest.warns(UserWarning) as caught:
        ds = SignalWindows(records, channels=("II", "V5"), fs=250.0, window_s=20.0, channel_aliases=_ecg_alias)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0] == (f"{folder}: 2 of 3 records skipped for train: their train part (the first 90 % of each "
                           "record) is shorter than one 20 s window (cut/short12 10.8 s, cut/short16 14.4 s)")
    assert ds.short_records == (str(folder / "cut/short12"), str(folder / "cut/short16"))
    assert len(ds) == int(0.9 * 650000 / 360 // 20) and ds.n_records == 1


def test_many_short_records_list_the_first_few(signals_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for k in range(7):
        multisegment_cut(signals_dir / "mitdb/100", folder, f"s{k}", seconds=(4.0, 4.0))
    with pytest.raises(DataError) as exc:
        SignalWindows(index_records(folder), channels=("II",), fs=250.0, window_s=10.0, channel_aliases=_ecg_alias)
    message = one_line(exc, folder)
    assert "of all 7 records is shorter than one 10 s window" in message
    assert "s0 7.2 s, s1 7.2 s, s2 7.2 s, s3 7.2 s, s4 7.2 s, 2 more" in message
