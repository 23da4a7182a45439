"""ECG on a user's short records (issue 22): the recipe's 10 s windows on a 16 s multi-segment cut of a real record
are counted and named, never silently."""

from __future__ import annotations

import warnings

import pytest

from modalities.base import DataError
from modalities.ecg import build_dataset
from tests.modalities.signals.helpers import copy_files, multisegment_cut


def test_recipe_windows_on_a_16_s_multisegment_record(signals_dir, tmp_path):
    folder = tmp_path / "user"
    rec = multisegment_cut(signals_dir / "mitdb/100", folder, "short16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one record that holds a window: nothing to warn about
        ds = build_dataset({"path": str(folder)}, "train", 2)
    assert len(ds) == 1 and ds.n_records == 1  # what the loop compares with train.batch_size
    assert ds.summary() == "1 train window of 10 s from 1 record (short16)"
    assert ds[0, 1]["views"].shape == (2, 12, 5000)
    with pytest.raises(DataError) as exc:
        build_dataset({"path": str(folder)}, "val", 0)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(rec))
    assert "no val window" in message and "1.6 s" in message and "10 s window" in message
    with pytest.raises(DataError) as exc:
        build_dataset({"path": str(folder), "window_s": 30.0}, "train", 0)
    assert str(exc.value) == (f"{rec}: no train window: the record's train part (its first 90 %) lasts 14.4 s, "
                              "shorter than one 30 s window; give longer records or a shorter data.window_s")


def test_short_record_beside_a_long_one_is_named(signals_dir, tmp_path):
    folder = tmp_path / "user"
    copy_files(signals_dir / "mitdb/100", folder)
    multisegment_cut(signals_dir / "mitdb/100", folder, "short16")
    with pytest.warns(UserWarning, match=r"1 of 2 records skipped for train: its train part .* shorter than one "
                                         r"20 s window \(short16 14\.4 s\)"):
        ds = build_dataset({"path": str(folder), "window_s": 20.0}, "train", 0)
    assert ds.short_records == (str(folder / "short16"),) and len(ds) == int(0.9 * 650000 / 360 // 20)
