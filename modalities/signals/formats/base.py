"""What every format module shares: the :class:`FormatReader` pair it registers, :class:`NotARecording`,
and the helpers for messages, file stamps and record names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from modalities.base import DataError
from modalities.signals.record import RecordInfo

__all__ = ["FormatReader", "NotARecording", "file_stamp", "one_line", "record_name"]


class NotARecording(DataError):
    """A file with a supported suffix that holds no recording (a CSV table of text, or without a rate)."""


@dataclass(frozen=True)
class FormatReader:
    """The two functions of one file format (see :mod:`modalities.signals.formats`)."""

    format: str
    suffixes: tuple[str, ...]
    inspect: Callable[[Path, float | None], RecordInfo | None]
    read: Callable[[RecordInfo, int, int, Sequence[int]], list[np.ndarray]]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when it has none), for a one-line DataError."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def file_stamp(path: Path) -> tuple[int, int]:
    """mtime and size: part of the key of a per-process parse cache, so an edited file is parsed again."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def record_name(path: Path, suffixes: Sequence[str]) -> str:
    """The file name without its format suffix (``rec.fif.gz`` -> ``rec``, ``a.b.edf`` -> ``a.b``)."""
    lower = path.name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem
