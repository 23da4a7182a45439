"""The portable pretrained-encoder format: a folder with ``model.safetensors`` and ``config.json``.

:func:`save_pretrained` writes it atomically, :func:`load_pretrained` rebuilds the encoder from it without
unpickling anything (the config names a registered encoder, the weights are safetensors).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from models.registry import create

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "load_pretrained", "read_pretrained_config",
           "save_pretrained"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def save_pretrained(model: nn.Module, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically (temp folder, then rename).

    ``extra`` is stored under ``"extra"`` in config.json (e.g. the sampling rate and leads the encoder expects).
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not config or "name" not in config:
        raise ValueError("save_pretrained: the model was not built by models.create (no config)")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {"format_version": FORMAT_VERSION, "model": config, "extra": extra or {}}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if directory.exists():
            old = directory.with_name(directory.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_pretrained_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pretrained encoder here (config.json missing)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "model" not in meta or "name" not in meta["model"]:
        raise ValueError(f"{path}: no 'model.name' entry")
    return meta


def load_pretrained(directory: str | Path, map_location: str = "cpu") -> nn.Module:
    """Rebuild the encoder saved by :func:`save_pretrained`; weights come from safetensors, never pickle."""
    from safetensors.torch import load_file

    meta = read_pretrained_config(directory)
    cfg = dict(meta["model"])
    model = create(cfg.pop("name"), **cfg)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file missing")
    model.load_state_dict(load_file(str(weights), device=map_location), strict=True)
    model.pretrained_extra = meta.get("extra", {})
    return model.eval()
