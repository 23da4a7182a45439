"""The PPG recordings that ship inside the installed ``heartpy`` package (``heartpy/data``): the embedded default
data and the built-in probes' data (see data_cards/heartpy_ppg.md)."""

from __future__ import annotations

from pathlib import Path

from modalities.base import DataError

__all__ = ["HEARTPY_FILES", "heartpy_data_dir"]

HEARTPY_FILES = ("data.csv", "data2.csv", "data3.csv")


def heartpy_data_dir() -> Path:
    """The ``data`` folder of the installed ``heartpy`` package, found on disk (never downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec("heartpy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("heartpy: package not installed (pip install heartpy); it carries the default PPG data")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [f for f in HEARTPY_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: heartpy data files missing: {', '.join(missing)}")
    return folder
