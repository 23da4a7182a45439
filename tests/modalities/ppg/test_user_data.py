"""PPG on a user's ICU record (issue 22): the recipe's 60 s windows on the real Challenge 2015 record (PLETH at
250 Hz) and on short cuts of it are counted and named."""

from __future__ import annotations

import pytest

from modalities.base import DataError
from modalities.ppg import build_dataset
from tests.modalities.signals.helpers import copy_files, make_read_only, make_writable, multisegment_cut, snapshot

RECIPE = {"fs": 64, "window_s": 60.0, "val_fraction": 0.1}


def test_one_icu_record_has_fewer_windows_than_a_batch(signals_dir, tmp_path):
    folder = tmp_path / "icu"
    copy_files(signals_dir / "challenge2015/a103l", folder)
    make_read_only(folder)
    before = snapshot(folder)
    try:
        ds = build_dataset({**RECIPE, "path": str(folder)}, "train", 2)
        assert len(ds) == 4 and ds.n_records == 1  # 297 s train part: 4 windows, far fewer than a batch of 256
        assert ds.summary() == "4 train windows of 60 s from 1 record (a103l)"
        assert ds[0, 5]["views"].shape == (2, 1, 3840)
        assert snapshot(folder) == before
    finally:
        make_writable(folder)


def test_a_16_s_cut_is_refused_in_one_line(signals_dir, tmp_path):
    folder = tmp_path / "icu"
    rec = multisegment_cut(signals_dir / "challenge2015/a103l", folder, "a103l_16s")
    with pytest.raises(DataError) as exc:
        build_dataset({**RECIPE, "path": str(folder)}, "train", 2)
    assert str(exc.value) == (f"{rec}: no train window: the record's train part (its first 90 %) lasts 14.4 s, "
                              "shorter than one 60 s window; give longer records or a shorter data.window_s")


def test_short_cut_beside_the_full_record_is_named(signals_dir, tmp_path):
    folder = tmp_path / "icu"
    copy_files(signals_dir / "challenge2015/a103l", folder / "full")
    multisegment_cut(signals_dir / "challenge2015/a103l", folder / "cut", "a103l_40s", seconds=(20.0, 20.0))
    with pytest.warns(UserWarning) as caught:
        ds = build_dataset({**RECIPE, "path": str(folder)}, "train", 2)
    messages = [str(w.message) for w in caught if "skipped for train" in str(w.message)]
    assert messages == [f"{folder}: 1 of 2 records skipped for train: its train part (the first 90 % of each record) "
                        "is shorter than one 60 s window (cut/a103l_40s 36 s)"]
    assert len(ds) == 4
