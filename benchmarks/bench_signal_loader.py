"""Speed and memory of lazy WFDB window loading (index + SignalWindows) on MIT-BIH record 100.

Indexes ``<repo>/../shared/data/signals/mitdb`` (one 30-minute, 2-lead, 360 Hz record), then
draws seeded random 10 s windows in the 12-lead layout at 500 Hz, as the ECG modality does, and
reports throughput (median of repeats), peak RSS, the peak Python allocation while reading
windows (tracemalloc) next to the size of one window and of the whole record, and index times.

    .venv/bin/python benchmarks/bench_signal_loader.py [--data DIR] [--windows 300] [--repeats 5]

Writes ``benchmarks/results/signal_loader.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import wfdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modalities.signals.index import index_records  # noqa: E402
from modalities.signals.windows import SignalWindows  # noqa: E402

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def mitbih_alias(name: str) -> str | None:
    return {"MLII": "II", "V5": "V5"}.get(name)


def draw(ds: SignalWindows, n: int, seed0: int) -> float:
    """Seconds to fetch ``n`` seeded windows."""
    t0 = time.perf_counter()
    for k in range(n):
        item = ds[k % len(ds), seed0 + k]
        assert item["signal"].shape == (len(LEADS), ds.n_samples)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "signals" / "mitdb")
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "signal_loader.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = args.data.resolve()
    if not data.is_dir():
        sys.exit(f"{data}: benchmark data missing (expected the shared data beside the repository)")

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        records = index_records(data, cache_dir=cache)
        index_cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index_records(data, cache_dir=cache)
        index_warm_s = time.perf_counter() - t0
    record = records[0]

    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    ds = SignalWindows(records, channels=LEADS, fs=500.0, window_s=10.0, channel_aliases=mitbih_alias)
    draw(ds, 10, seed0=10**6)  # warm-up: imports, filter design caches
    times = [draw(ds, args.windows, seed0=r * args.windows) for r in range(args.repeats)]
    rates = [args.windows / t for t in times]

    # Peak Python allocation while reading windows vs. one output window and the whole record.
    tracemalloc.start()
    draw(ds, 50, seed0=7)
    _, window_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    window_bytes = len(LEADS) * ds.n_samples * 4
    record_bytes = record.n_frames * len(record.channels) * 8  # float64 physical, as wfdb returns it
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes

    # Reference: what reading the whole record once costs (what the loader avoids).
    tracemalloc.start()
    wfdb.rdrecord(record.path)
    _, whole_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    result = {
        "record": f"{record.name} ({record.duration_s:.0f} s, {len(record.channels)} ch @ {record.fs:g} Hz)",
        "windows_per_repeat": args.windows,
        "repeats": args.repeats,
        "windows_per_s_median": statistics.median(rates),
        "windows_per_s_all": rates,
        "ms_per_window_median": 1000 * statistics.median(times) / args.windows,
        "index_cold_s": index_cold_s,
        "index_cached_s": index_warm_s,
        "peak_rss_mb": rss_mb,
        "peak_rss_before_windows_mb": rss_before_mb,
        "tracemalloc_peak_reading_mb": window_peak / 2**20,
        "one_window_mb": window_bytes / 2**20,
        "peak_over_window": window_peak / window_bytes,
        "whole_record_float64_mb": record_bytes / 2**20,
        "tracemalloc_peak_whole_record_read_mb": whole_peak / 2**20,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "wfdb": wfdb.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    rows = [
        ("record", result["record"]),
        ("windows/s (median of %d x %d)" % (args.repeats, args.windows), f"{result['windows_per_s_median']:.1f}"),
        ("ms/window (median)", f"{result['ms_per_window_median']:.2f}"),
        ("index, cold (s)", f"{index_cold_s:.4f}"),
        ("index, cached (s)", f"{index_warm_s:.4f}"),
        ("peak RSS after imports + index (MB)", f"{rss_before_mb:.1f}"),
        ("peak RSS after reading windows (MB)", f"{rss_mb:.1f}"),
        ("tracemalloc peak while reading (MB)", f"{result['tracemalloc_peak_reading_mb']:.3f}"),
        ("one 12x5000 float32 window (MB)", f"{result['one_window_mb']:.3f}"),
        ("peak / one window", f"{result['peak_over_window']:.1f}x"),
        ("whole record as float64 (MB)", f"{result['whole_record_float64_mb']:.1f}"),
        ("tracemalloc peak, whole-record read (MB)", f"{result['tracemalloc_peak_whole_record_read_mb']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
