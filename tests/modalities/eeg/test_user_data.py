"""EEG windows on the real recordings (issue 22): recordings shorter than a window are named, zero windows refused,
and the data folder is never written."""

from __future__ import annotations

import pytest

from modalities.base import DataError
from modalities.eeg import build_dataset
from tests.conftest import shared_data
from tests.modalities.signals.helpers import copy_files, make_read_only, make_writable, snapshot


@pytest.fixture
def eeg_copy(tmp_path):
    folder = tmp_path / "eeg"
    source = shared_data("signals/eeg")
    for f in sorted(source.iterdir()):
        copy_files(f, folder)
    return folder


def test_short_recording_is_named_and_the_folder_untouched(eeg_copy):
    make_read_only(eeg_copy)
    before = snapshot(eeg_copy)
    try:
        # the EDF lasts 124 s (train part 111.6 s), the FIF 360 s (324 s)
        with pytest.warns(UserWarning) as caught:
            ds = build_dataset({"path": str(eeg_copy), "window_s": 200.0}, "train")
        messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
        assert messages == [f"{eeg_copy}: 1 of 2 records skipped for train: its train part (the first 90 % of each "
                            "record) is shorter than one 200 s window (test_edf_overlapping_annotations.edf 112 s)"]
        assert len(ds) == 1 and ds.n_records == 1
        assert ds.summary() == "1 train window of 200 s from 1 record (data_resting_EO_200Hz_raw.fif)"
        with pytest.raises(DataError) as exc:
            build_dataset({"path": str(eeg_copy), "window_s": 400.0}, "train")
        message = str(exc.value)
        assert "\n" not in message and message.startswith(str(eeg_copy))
        assert "of all 2 records is shorter than one 400 s window" in message
        assert snapshot(eeg_copy) == before
    finally:
        make_writable(eeg_copy)
