"""Fixtures for the biosignal reader tests: copies of shared records and records built with wfdb.

``signals_dir`` (the shared data, failing in CI when missing) comes from the suite's conftest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

SIGNALS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "signals"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrise over the records actually on disk, so that a new record is tested automatically.
    if "wfdb_record" in metafunc.fixturenames:
        found = sorted(
            str(p.relative_to(SIGNALS).with_suffix("")) for p in SIGNALS.glob("**/*.hea")
        ) if SIGNALS.is_dir() else []
        metafunc.parametrize("wfdb_record", found or ["<shared data missing>"])


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Indexes go to a cache shared by this session's tests, never to the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "modalities-cache"
    monkeypatch.setenv("MODALITIES_CACHE", str(cache))
    return cache


@pytest.fixture
def copy_record(tmp_path: Path, signals_dir: Path):
    """``copy_record("mitdb/100")`` copies a shared record's files into a fresh folder under tmp_path."""

    def copy(rel: str, dest: Path | None = None) -> Path:
        src = signals_dir / rel
        dest = dest or tmp_path / rel.replace("/", "_")
        dest.mkdir(parents=True, exist_ok=True)
        for f in src.parent.glob(src.name + ".*"):
            shutil.copyfile(f, dest / f.name)  # copyfile: the copies are writable
        return dest / src.name

    return copy


@pytest.fixture
def multisegment(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Two multi-segment records (fixed and variable layout) written with wfdb, and their signals.

    ``fixed``: segments ``fa`` (300 frames) and ``fb`` (500), channels I and II at 100 Hz, II with
    2 samples per frame. ``variable``: layout header ``vlay``, segment ``fa``-like ``va`` (300,
    channels I and II), a 100-frame gap (``~``) and ``vb`` (200, channel II only).
    """
    folder = tmp_path / "multiseg"
    folder.mkdir()
    rng = np.random.default_rng(7)

    def seg(name: str, n: int, names: list[str], spf: list[int]) -> list[np.ndarray]:
        sigs = [np.round(rng.normal(size=n * s).cumsum() * 0.05, 2) for s in spf]
        wfdb.wrsamp(name, fs=100, units=["mV"] * len(names), sig_name=names, e_p_signal=sigs,
                    samps_per_frame=spf, fmt=["16"] * len(names), adc_gain=[100.0] * len(names),
                    baseline=[0] * len(names), write_dir=str(folder))
        return sigs

    fa = seg("fa", 300, ["I", "II"], [1, 2])
    fb = seg("fb", 500, ["I", "II"], [1, 2])
    (folder / "fixed.hea").write_text("fixed/2 2 100 800\nfa 300\nfb 500\n#fixed layout\n")
    va = seg("va", 300, ["I", "II"], [1, 1])
    vb = seg("vb", 200, ["II"], [1])
    (folder / "vlay.hea").write_text(
        "vlay 2 100 0\n~ 0 100/mV 16 0 0 0 0 I\n~ 0 100/mV 16 0 0 0 0 II\n"
    )
    (folder / "variable.hea").write_text("variable/4 2 100 600\nvlay 0\nva 300\n~ 100\nvb 200\n")
    nan = np.full(100, np.nan)
    return folder, {
        "fixed/I": np.concatenate([fa[0], fb[0]]),
        "fixed/II": np.concatenate([fa[1], fb[1]]),
        "variable/I": np.concatenate([va[0], nan, np.full(200, np.nan)]),
        "variable/II": np.concatenate([va[1], nan, vb[0]]),
    }
