"""Labelled signal windows for fine-tuning: annotation and table label sources on real records, subject-wise splits."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import wfdb

from modalities.base import DataError
from modalities.signals.labelled import annotation_windows, subject_split, table_windows
from modalities.signals.index import index_records


def test_beat_windows_are_the_atr_beats_whose_centred_window_fits(signals_dir):
    info = index_records(signals_dir / "mitdb" / "100")[0]
    ann = wfdb.rdann(str(signals_dir / "mitdb" / "100"), "atr")
    window = 2.5
    duration = info.n_frames / info.fs
    expected = collections.Counter(s for s, t in zip(ann.symbol, ann.sample / ann.fs)
                                   if s in ("N", "A") and t - window / 2 >= 0 and t + window / 2 <= duration)
    items = annotation_windows([info], ["N", "A"], window)
    got = collections.Counter(int(it.target[0]) for it in items)
    assert got == {0: expected["N"], 1: expected["A"]} and expected["A"] == 33
    first_a = next(it for it in items if it.target == (1.0,))
    onset = ann.sample[ann.symbol.index("A")] / ann.fs
    assert first_a.start_s == pytest.approx(onset - window / 2)


def test_motor_imagery_events_join_labels_and_skip_short_spans(signals_dir):
    info = index_records(signals_dir / "eeg" / "test_edf_overlapping_annotations.edf")[0]
    items = annotation_windows([info], ["T0", "T1+T2"], 1.25)
    assert collections.Counter(it.target[0] for it in items) == {0.0: 19, 1.0: 19}
    assert annotation_windows([info], ["T1", "T2"], 2.0)  # 5.1 s movement spans hold a 2 s window
    assert all(it.target[0] in (0.0, 1.0) for it in annotation_windows([info], ["T1", "T2"], 2.0))
    assert not [it for it in annotation_windows([info], ["T0", "T1"], 2.0) if it.target == (0.0,)]  # rest: 1.4 s
    with pytest.raises(DataError, match=r"no annotation labelled sleep.*found: T0, T1, T2"):
        annotation_windows([info], ["sleep"], 1.0)


def test_event_stride_tiles_each_long_span_with_windows_inside_it(signals_dir):
    import mne

    path = signals_dir / "eeg" / "test_edf_overlapping_annotations.edf"
    info = index_records(path)[0]
    ann = mne.io.read_raw_edf(path, preload=False, verbose="error").annotations
    spans = [(o, d, 0.0 if t == "T0" else 1.0) for o, d, t in zip(ann.onset, ann.duration, ann.description)
             if t in ("T0", "T1", "T2") and d + 1e-6 >= 1.25]
    expected = collections.Counter()
    for o, d, c in spans:
        expected[c] += int((d - 1.25 + 1e-6) // 1.0) + 1
    items = annotation_windows([info], ["T0", "T1+T2"], 1.25, stride_s=1.0)
    assert collections.Counter(it.target[0] for it in items) == expected and expected[1.0] > 19
    for it in items:  # every window lies inside a span of its class
        assert any(o - 1e-6 <= it.start_s and it.start_s + 1.25 <= o + d + 1e-6 and c == it.target[0]
                   for o, d, c in spans)
    with pytest.raises(DataError, match="data.event_stride_s: must be > 0"):
        annotation_windows([info], ["T0"], 1.25, stride_s=0.0)


def _table(tmp_path, records, subjects, extra_rows=()):
    path = tmp_path / "labels.csv"
    lines = ["record_name,patient_id,hr,scp_codes"]
    for i, (info, subj) in enumerate(zip(records, subjects)):
        codes = "{'NORM': 100.0}" if i % 2 else "{'IMI': 35.0, 'ASMI': 15.0}"
        lines.append(f"{info.name},{subj},{60 + i},\"{codes}\"")
    lines += list(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_subject_split_never_puts_a_subject_in_two_splits(signals_dir, tmp_path):
    records = index_records(signals_dir)
    assert len(records) >= 6
    subjects = [f"p{i // 2}" for i in range(len(records))]  # two records per patient
    items = table_windows(records, _table(tmp_path, records, subjects), ["hr"], 2.0, subject_column="patient_id",
                          max_windows=5)
    for seed in range(4):
        parts, by = subject_split(items, (0.6, 0.2, 0.2), seed)
        assert by == "subject"
        owners = {k: {items[i].subject for i in idx} for k, idx in parts.items()}
        assert all(owners[k] for k in owners)  # every split has a subject
        assert not (owners["train"] & owners["val"] or owners["train"] & owners["test"] or owners["val"] & owners["test"])
        assert sorted(np.concatenate(list(parts.values()))) == list(range(len(items)))


def test_one_subject_is_split_by_time_without_overlap(signals_dir):
    info = index_records(signals_dir / "mitdb" / "100")[0]
    items = annotation_windows([info], ["N", "A"], 2.5)
    parts, by = subject_split(items, (0.8, 0.1, 0.1), 0, window_s=2.5)
    assert by == "time"
    end = {k: max(items[i].start_s for i in idx) + 2.5 for k, idx in parts.items()}
    start = {k: min(items[i].start_s for i in idx) for k, idx in parts.items()}
    assert end["train"] <= start["val"] + 1e-9 and end["val"] <= start["test"] + 1e-9
    assert len(parts["train"]) > 6 * len(parts["test"])


def test_ptbxl_style_statement_dictionaries_become_superclass_labels(signals_dir, tmp_path):
    records = index_records(signals_dir / "mitdb") + index_records(signals_dir / "ptbdb")
    statements = tmp_path / "scp_statements.csv"
    statements.write_text(",description,diagnostic_class\nNORM,normal ECG,NORM\nIMI,inferior MI,MI\n"
                          "ASMI,anteroseptal MI,MI\n")
    items = table_windows(records, _table(tmp_path, records, ["a", "b"]), ["NORM", "MI", "STTC"], 5.0,
                          label_column="scp_codes", statements=statements, max_windows=2)
    by_record = {it.record.name: it.target for it in items}
    assert by_record[records[0].name] == (0.0, 1.0, 0.0)  # IMI + ASMI -> MI
    assert by_record[records[1].name] == (1.0, 0.0, 0.0)


def test_bad_label_tables_end_in_one_line(signals_dir, tmp_path):
    records = index_records(signals_dir / "mitdb")
    path = tmp_path / "labels.csv"
    path.write_text("record_name,hr\nnot_a_record,70\nother,80\n")
    with pytest.raises(DataError, match=r"no id in .*labels.csv:record_name \(e.g. not_a_record, other\) matches"):
        table_windows(records, path, ["hr"], 2.0)
    path.write_text("record_name,hr\n100,70\n")
    with pytest.raises(DataError, match=r"has no column 'rhythm' \(columns: record_name, hr\)"):
        table_windows(records, path, ["rhythm"], 2.0)
    path.write_text("name,hr\n100,70\n")
    with pytest.raises(DataError, match=r"none of the id columns"):
        table_windows(records, path, ["hr"], 2.0)


def test_labelled_records_shorter_than_a_window_are_named(signals_dir, tmp_path):
    records = index_records(signals_dir / "mitdb") + index_records(signals_dir / "macecgdb")  # 1805.6 s and 8 s
    path = tmp_path / "labels.csv"
    path.write_text("record_name,hr\n100,70\ntest01_00s,80\n")
    with pytest.warns(UserWarning, match=r"1 labelled record\(s\) are shorter than one 10 s window and give no "
                                         r"window \(test01_00s 8 s\)"):
        items = table_windows(records, path, ["hr"], 10.0)
    assert {it.record.name for it in items} == {"100"}
    path.write_text("record_name,hr\ntest01_00s,80\n")
    with pytest.raises(DataError) as exc:
        table_windows(records, path, ["hr"], 10.0)
    assert "\n" not in str(exc.value) and "test01_00s 8 s" in str(exc.value) and "10 s window" in str(exc.value)
