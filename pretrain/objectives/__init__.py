"""Self-supervised objectives, one file each, registered by name.

Objectives register lazily (``name -> module:Class``) so that listing them imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from modalities.options import OptionError, check_options
from models.registry import signature_options
from pretrain.config import ConfigError
from pretrain.objectives.base import Objective

_REGISTRY: dict[str, str] = {
    "jepa": "pretrain.objectives.jepa:JEPA",
    "barlow_twins": "pretrain.objectives.barlow_twins:BarlowTwins",
    "vicreg": "pretrain.objectives.vicreg:VICReg",
    "infonce": "pretrain.objectives.infonce:InfoNCE",
    "cross_modal": "pretrain.objectives.cross_modal:CrossModal",
    "equivariance": "pretrain.objectives.equivariance:Equivariance",
    "vq_reconstruction": "pretrain.objectives.vq_reconstruction:VQReconstruction",
    "grover": "pretrain.objectives.grover_tasks:GroverTasks",
    "merlin": "pretrain.objectives.merlin:Merlin",
    "e_ssl3d": "pretrain.objectives.e_ssl3d:ESSL3D",
    "msm": "pretrain.objectives.msm:MSM",
    "filter2noise": "pretrain.objectives.filter2noise:Filter2Noise",
    "zs_n2n": "pretrain.objectives.zs_n2n:ZSN2N",
    "supervised": "pretrain.objectives.supervised:Supervised",
}


def names() -> list[str]:
    return sorted(n for n in _REGISTRY if _available(n))


def _available(name: str) -> bool:
    module = _REGISTRY[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


def get(name: str) -> type[Objective]:
    if name not in _REGISTRY or not _available(name):
        raise ConfigError(f"objective.name: unknown objective {name!r}; known: {', '.join(names())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def options(cls: type[Objective]) -> dict[str, Any]:
    """The objective's typed options: ``{option: type hint}`` of its constructor's keyword arguments (after the
    encoder)."""
    return signature_options(cls, skip=1)


def check(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``objective`` section with its options checked against the objective's constructor: an unknown option or
    a value of the wrong type is one :class:`ConfigError` naming it (run before any data is read)."""
    cfg = dict(cfg)
    cls = get(cfg.pop("name", None))
    try:
        return {"name": cls.name, **check_options(cfg, options(cls), "objective", owner=cls.name)}
    except OptionError as e:
        raise ConfigError(str(e)) from None


def create(encoder: nn.Module, cfg: dict[str, Any]) -> Objective:
    """Build the objective ``cfg["name"]`` around ``encoder``; unknown options and wrong types are refused by name."""
    cfg = check(cfg)
    return get(cfg.pop("name"))(encoder, **cfg)


def check_compatible(cls: type[Objective], modality: Any) -> None:
    """Refuse, in one line, an objective that the modality cannot serve (wrong sample kind, or no views)."""
    fits = []
    for n in names():
        c = get(n)
        if c.self_supervised and modality.sample_kind in c.sample_kinds and (c.views == 0 or modality.view_augmentations):
            fits.append(n)
    if cls.name not in fits and not (not cls.self_supervised and modality.sample_kind in cls.sample_kinds):
        why = (f"it needs {cls.views} augmented views" if modality.sample_kind in cls.sample_kinds
               else f"it serves {', '.join(cls.sample_kinds)} samples, not {modality.sample_kind}")
        raise ConfigError(f"--objective {cls.name}: modality {modality.name} cannot use it ({why}); "
                          f"objectives that fit: {', '.join(fits)}")


__all__ = ["Objective", "check", "check_compatible", "create", "get", "names", "options"]
