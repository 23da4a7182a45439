"""SignalWindows over the shared real records: layout, determinism, splits, views, pickling."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from modalities.base import DataError
from modalities.signals.filters import bandpass, normalize
from modalities.signals.index import index_records
from modalities.signals.record import RecordInfo
from modalities.signals.resampled import read_window_resampled
from modalities.signals.windows import SignalWindows

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_BY_LOWER = {lead.lower(): lead for lead in LEADS}


def ecg_alias(name: str) -> str | None:
    """Record channel -> 12-lead name: PTB's lower-case leads, MIT-BIH's modified lead II."""
    name = name.strip().lower()
    if name == "mlii":
        return "II"
    return _BY_LOWER.get(name)


def add_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, 0.5, size=x.shape).astype(np.float32)


def double(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 2.0 * x


@pytest.fixture
def records(signals_dir: Path, tmp_path: Path) -> list[RecordInfo]:
    return index_records(signals_dir, cache_dir=tmp_path)


def windows(records, **kwargs) -> SignalWindows:
    kwargs.setdefault("channels", LEADS)
    kwargs.setdefault("fs", 500.0)
    kwargs.setdefault("window_s", 2.0)
    kwargs.setdefault("channel_aliases", ecg_alias)
    with pytest.warns(UserWarning, match="no channel mapping"):
        return SignalWindows(records, **kwargs)


def by_name(records, name: str) -> RecordInfo:
    return next(r for r in records if r.name == name)


def test_length_shapes_and_fields(records) -> None:
    ds = windows(records)
    # Usable: mitdb/100 (MLII, V5), ptbdb/s0010_re (12 leads), challenge2015/a103l (II).
    expected = 0
    for name in ("100", "s0010_re", "a103l"):
        info = by_name(records, name)
        expected += math.floor(math.floor(0.9 * info.n_frames) / info.fs / 2.0)
    assert len(ds) == expected
    for key in (0, len(ds) - 1, (3, 11), (len(ds) // 2, 5)):
        item = ds[key]
        assert item["signal"].shape == (12, 1000) and item["signal"].dtype == torch.float32
        assert item["fs"] == 500.0
        assert item["subject"] in ("100", "s0010_re", "a103l")
        assert item["record"] == by_name(records, item["subject"]).path
        assert isinstance(item["start_s"], float)
        assert torch.isfinite(item["signal"]).all()
        assert "views" not in item
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert torch.equal(ds[-1]["signal"], ds[len(ds) - 1]["signal"])


def test_unusable_records_are_listed(records) -> None:
    with pytest.warns(UserWarning) as caught:
        SignalWindows(records, channels=LEADS, fs=500.0, window_s=2.0, channel_aliases=ecg_alias)
    message = str(caught[0].message)
    assert by_name(records, "03700181").path in message and by_name(records, "test01_00s").path in message
    assert by_name(records, "100").path not in message
    with pytest.raises(DataError) as exc:
        SignalWindows(records, channels=("EEG Fz",), fs=500.0, window_s=2.0)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(str(Path(records[0].path).parents[1]))


def test_short_records_are_skipped(records) -> None:
    macecg = by_name(records, "test01_00s")  # 8 s long
    ds = SignalWindows([macecg], channels=("ECG 1", "ECG 2"), fs=250.0, window_s=3.0)
    assert len(ds) == 2  # 7.2 s train part
    with pytest.raises(DataError) as exc:
        SignalWindows([macecg], channels=("ECG 1",), fs=250.0, window_s=10.0)
    assert str(exc.value).startswith(macecg.path)
    with pytest.raises(DataError):  # the 0.8 s val part is shorter than a window
        SignalWindows([macecg], channels=("ECG 1",), fs=250.0, window_s=3.0, split="val")


def test_fixed_windows_are_deterministic_and_tile_the_part(records) -> None:
    mitdb = by_name(records, "100")
    ds = SignalWindows([mitdb], channels=LEADS, fs=500.0, window_s=10.0, channel_aliases=ecg_alias)
    starts = [ds[i]["start_s"] for i in range(5)]
    assert starts == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert torch.equal(ds[3]["signal"], ds[3]["signal"])
    fixed = SignalWindows([mitdb], channels=LEADS, fs=500.0, window_s=10.0, channel_aliases=ecg_alias,
                          random_crop=False)
    assert fixed[3, 99]["start_s"] == 30.0  # random_crop=False ignores the seed for the crop


def test_seeded_crops(records) -> None:
    ds = windows(records)
    a, b, c = ds[10, 1234], ds[10, 1234], ds[10, 4321]
    assert a["start_s"] == b["start_s"] and torch.equal(a["signal"], b["signal"])
    assert a["record"] == c["record"]  # the index picks the record, the seed the crop
    assert a["start_s"] != c["start_s"] and not torch.equal(a["signal"], c["signal"])
    starts = {ds[10, seed]["start_s"] for seed in range(20)}
    assert len(starts) == 20
    info = by_name(records, a["subject"])
    train_end = math.floor(0.9 * info.n_frames) / info.fs
    assert all(0.0 <= s <= train_end - 2.0 for s in starts)


def test_train_and_val_never_overlap(records) -> None:
    train = windows(records, val_fraction=0.2)
    val = windows(records, split="val", val_fraction=0.2)
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for ds, split in ((train, "train"), (val, "val")):
        keys = list(range(len(ds))) + [(i, seed) for seed, i in enumerate(range(0, len(ds), 7))]
        for key in keys:
            item = ds[key]
            spans.setdefault(item["record"], []).append((split, item["start_s"], item["start_s"] + 2.0))
    assert len(spans) == 3
    for record, items in spans.items():
        train_end = max(stop for split, _, stop in items if split == "train")
        val_start = min(start for split, start, _ in items if split == "val")
        assert train_end <= val_start + 1e-9, record
    assert len(val) < len(train)


def test_missing_leads_are_zero_and_values_follow_the_pipeline(records) -> None:
    mitdb = by_name(records, "100")
    ds = SignalWindows([mitdb], channels=LEADS, fs=500.0, window_s=10.0, channel_aliases=ecg_alias,
                       band=(0.5, 100.0), clip=5.0)
    item = ds[7]
    x = item["signal"].numpy()
    present = [LEADS.index("II"), LEADS.index("V5")]
    for row in range(12):
        if row in present:
            assert np.abs(x[row]).max() > 0.5
        else:
            np.testing.assert_array_equal(x[row], 0.0)
    raw = read_window_resampled(mitdb, item["start_s"], 10.0, ["MLII", "V5"], 500.0)
    expected = normalize(bandpass(raw, 500.0, 0.5, 100.0), clip=5.0)
    np.testing.assert_allclose(x[present], expected, atol=1e-5)
    assert np.abs(x).max() <= 5.0

    ptb = by_name(records, "s0010_re")
    ds = SignalWindows([ptb], channels=LEADS, fs=500.0, window_s=10.0, channel_aliases=ecg_alias, band=None,
                       clip=None)
    x = ds[0]["signal"].numpy()
    raw = read_window_resampled(ptb, 0.0, 10.0, ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3",
                                                 "v4", "v5", "v6"], 500.0)
    np.testing.assert_allclose(x, normalize(raw, clip=None), atol=1e-5)


def ii_and_iii_as_ii(name: str) -> str | None:
    return "II" if name in ("ii", "iii") else None


def test_first_record_channel_mapping_to_a_lead_wins(records) -> None:
    ptb = by_name(records, "s0010_re")
    ds = SignalWindows([ptb], channels=("I", "II"), fs=500.0, window_s=10.0, channel_aliases=ii_and_iii_as_ii,
                       band=None, clip=None)
    x = ds[1]["signal"].numpy()
    np.testing.assert_array_equal(x[0], 0.0)
    ii = read_window_resampled(ptb, 10.0, 10.0, ["ii"], 500.0)
    np.testing.assert_allclose(x[1:], normalize(ii, clip=None), atol=1e-5)


def test_transform_and_views(records) -> None:
    mitdb = by_name(records, "100")
    common = dict(channels=LEADS, fs=500.0, window_s=4.0, channel_aliases=ecg_alias)
    plain = SignalWindows([mitdb], **common)
    doubled = SignalWindows([mitdb], transform=double, **common)
    np.testing.assert_allclose(doubled[5, 9]["signal"], 2.0 * plain[5, 9]["signal"])

    ds = SignalWindows([mitdb], views=3, view_transform=add_noise, **common)
    item = ds[5, 9]
    assert item["views"].shape == (3, 12, 2000) and item["views"].dtype == torch.float32
    assert torch.equal(item["signal"], plain[5, 9]["signal"])  # signal stays un-augmented
    v = item["views"]
    assert not torch.equal(v[0], v[1]) and not torch.equal(v[1], v[2])
    for k in range(3):
        assert (v[k] - item["signal"]).std() == pytest.approx(0.5, rel=0.05)
    assert torch.equal(ds[5, 9]["views"], v)  # views are a function of the seed
    with pytest.raises(DataError):
        SignalWindows([mitdb], views=2, **common)  # views need a view_transform


def test_pickle_round_trip_without_open_files(records, signals_dir: Path) -> None:
    ds = windows(records, views=2, view_transform=add_noise)
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000  # metadata only, never samples
    clone = pickle.loads(blob)
    assert len(clone) == len(ds)
    a, b = ds[17, 3], clone[17, 3]
    assert torch.equal(a["signal"], b["signal"]) and torch.equal(a["views"], b["views"])
    if os.path.isdir("/proc/self/fd"):
        open_files = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
        assert not [f for f in open_files if f.startswith(str(signals_dir))]


def test_bad_arguments(records) -> None:
    mitdb = by_name(records, "100")
    for kwargs in ({"split": "test"}, {"val_fraction": 1.0}, {"split": "val", "val_fraction": 0.0},
                   {"fs": 0.0}):
        args = dict(channels=LEADS, fs=500.0, window_s=2.0, channel_aliases=ecg_alias) | kwargs
        with pytest.raises(DataError) as exc:
            SignalWindows([mitdb], **args)
        assert str(exc.value).startswith(mitdb.path)
    with pytest.raises(DataError):
        SignalWindows([], channels=LEADS, fs=500.0, window_s=2.0)


def identity_view(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x


def test_record_views_are_other_segments_of_the_same_record(records) -> None:
    mitdb = [r for r in records if r.name == "100"]
    ds = SignalWindows(mitdb, channels=LEADS, fs=500.0, window_s=2.0, channel_aliases=ecg_alias, views=2,
                       view_transform=identity_view, view_source="record")
    same = windows(records, views=2, view_transform=identity_view)
    item = ds[(5, 123)]
    v0, v1 = item["views"]
    # each view is a real window of record 100 (it equals a fresh read at some start), different from the others
    assert not torch.equal(v0, v1) and not torch.equal(v0, item["signal"])
    assert item["subject"] == "100"
    # with view_source="window" (default) the un-augmented views equal the item's own window
    s = same[(5, 123)]
    assert torch.equal(s["views"][0], s["signal"]) and torch.equal(s["views"][1], s["signal"])
    # deterministic from the seed
    assert torch.equal(ds[(5, 123)]["views"], item["views"])
    with pytest.raises(DataError, match="view_source must be"):
        SignalWindows(mitdb, channels=LEADS, fs=500.0, window_s=2.0, channel_aliases=ecg_alias, views=2,
                      view_transform=identity_view, view_source="subject")
