"""Data side of the library: readers, sample building, embedded defaults and probe labels.

``names()`` lists the registered modalities and ``get(name)`` returns a :class:`~modalities.base.Modality`.
Modalities register lazily so that importing this package does not import every reader stack.
"""

from __future__ import annotations

import importlib

from modalities.base import DataError, Modality, ProbeSet

# name -> module that defines ``MODALITY``
_REGISTRY: dict[str, str] = {
    "ct": "modalities.ct",
    "ecg": "modalities.ecg",
    "eeg": "modalities.eeg",
    "lidar": "modalities.lidar",
    "molecules": "modalities.molecules",
    "ppg": "modalities.ppg",
    "sar": "modalities.sar",
    "scenes": "modalities.scenes",
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Modality:
    if name not in _REGISTRY:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(names())}")
    return importlib.import_module(_REGISTRY[name]).MODALITY


__all__ = ["DataError", "Modality", "ProbeSet", "get", "names"]
