"""Data side of the library: readers, sample building, embedded defaults and probe labels.

``names()`` lists the registered modalities and ``get(name)`` returns a :class:`~modalities.base.Modality`.
Modalities register lazily so that importing this package does not import every reader stack.
"""

from __future__ import annotations

import importlib

from modalities.base import DataError, Modality, ProbeSet

# name -> (module that defines ``MODALITY``, the pip extra that installs its readers)
_REGISTRY: dict[str, tuple[str, str]] = {
    "ct": ("modalities.ct", "ct"),
    "ecg": ("modalities.ecg", "signals"),
    "eeg": ("modalities.eeg", "signals"),
    "lidar": ("modalities.lidar", "points"),
    "molecules": ("modalities.molecules", "molecules"),
    "ppg": ("modalities.ppg", "signals"),
    "sar": ("modalities.sar", "sar"),
    "scenes": ("modalities.scenes", "points"),
}


class MissingExtra(ImportError):
    """A modality whose libraries are not installed; the message names the pip extra that installs them."""


def names() -> list[str]:
    return sorted(_REGISTRY)


def extra(name: str) -> str:
    """The pip extra of modality ``name`` (``pip install 'modalities[<extra>]'``)."""
    return _REGISTRY[name][1]


def get(name: str) -> Modality:
    if name not in _REGISTRY:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(names())}")
    module, pip_extra = _REGISTRY[name]
    try:
        return importlib.import_module(module).MODALITY
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("modalities", "models", "pretrain"):
            raise
        raise MissingExtra(f"modality {name} needs the package {e.name!r}, which is not installed: "
                           f"pip install 'modalities[{pip_extra}]'") from None


__all__ = ["DataError", "MissingExtra", "Modality", "ProbeSet", "extra", "get", "names"]
