"""Networks: encoders created by name, and the portable pretrained-encoder format.

``create(name, **cfg)`` builds a registered encoder; ``list_models(pattern)`` lists names;
``save_pretrained(model, dir)`` writes ``model.safetensors`` + ``config.json`` and ``load_pretrained(dir)``
rebuilds the encoder from them without unpickling anything.

>>> enc = create("vit1d_xs")
>>> enc.config["name"], enc.embed_dim
('vit1d_xs', 192)
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from models.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_pretrained, read_pretrained_config, save_pretrained
from models.registry import create, describe, list_models, options


def convert(source: str, checkpoint: str | Path, out: str | Path | None = None) -> nn.Module:
    """A reference implementation's checkpoint as our encoder (written to ``out`` if given); see
    :mod:`models.converters` for the sources."""
    from models.converters import convert as _convert

    return _convert(source, checkpoint, out)


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "convert", "create", "describe", "list_models", "load_pretrained", "options",
           "read_pretrained_config", "save_pretrained"]
