"""Self-supervised objectives, one file each, registered by name.

Objectives register lazily (``name -> module:Class``) so that listing them imports nothing heavy.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

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


def options(cls: type[Objective]) -> list[str]:
    """The objective's configurable options (its constructor's keyword arguments)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def create(encoder: nn.Module, cfg: dict[str, Any]) -> Objective:
    """Build the objective ``cfg["name"]`` around ``encoder``; unknown options are refused by name."""
    cfg = dict(cfg)
    cls = get(cfg.pop("name"))
    known = options(cls)
    for k in cfg:
        if k not in known:
            raise ConfigError(f"objective.{k}: unknown option for {cls.name}; known: {', '.join(known) or 'none'}")
    return cls(encoder, **cfg)


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


__all__ = ["Objective", "check_compatible", "create", "get", "names", "options"]
