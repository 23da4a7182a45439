"""Cuts of the shared real records for the data-layer tests: short multi-segment records, read-only archives."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import wfdb


def multisegment_cut(source: Path, out_dir: Path, name: str, seconds: tuple[float, ...] = (8.0, 8.0),
                     channels: list[int] | None = None) -> Path:
    """A multi-segment WFDB record ``out_dir/name`` made of the first ``sum(seconds)`` of a real single-segment
    record, one segment per entry of ``seconds`` (digital samples, gains and baselines kept, format 16)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = wfdb.rdheader(str(source))
    lengths = [int(round(s * header.fs)) for s in seconds]
    rec = wfdb.rdrecord(str(source), sampto=sum(lengths), channels=channels, physical=False)
    lines = [f"{name}/{len(lengths)} {rec.n_sig} {rec.fs:g} {sum(lengths)}"]
    start = 0
    for k, n in enumerate(lengths):
        seg = f"{name}_{k + 1}"
        wfdb.wrsamp(seg, fs=rec.fs, units=rec.units, sig_name=rec.sig_name,
                    d_signal=np.ascontiguousarray(rec.d_signal[start:start + n]), fmt=["16"] * rec.n_sig,
                    adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(out_dir))
        lines.append(f"{seg} {n}")
        start += n
    (out_dir / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return out_dir / name


def copy_files(source_record: Path, dest: Path) -> Path:
    """Copy every file of a record (``<stem>.*``) or one file into ``dest``; returns the copy's record path."""
    dest.mkdir(parents=True, exist_ok=True)
    matches = [source_record] if source_record.is_file() else list(source_record.parent.glob(source_record.name + ".*"))
    for f in matches:
        shutil.copyfile(f, dest / f.name)
    return dest / source_record.name


def make_read_only(folder: Path) -> None:
    """chmod a-w on ``folder`` and everything in it (root ignores the bits: the tests also compare listings)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for f in filenames:
            p = Path(dirpath) / f
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
        p = Path(dirpath)
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for dirpath, _, filenames in os.walk(folder):
        Path(dirpath).chmod(0o755)
        for f in filenames:
            (Path(dirpath) / f).chmod(0o644)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (hidden ones too) with its mtime and size."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_mtime_ns, st.st_size)
    return out
