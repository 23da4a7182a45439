"""Checkpoints of the reference implementations -> our pretrained-encoder folders.

``convert(source, checkpoint, out)`` reads a checkpoint written by a paper's own code, rebuilds the matching encoder
at the size the checkpoint records (never assumed), loads its weights with ``strict=True`` and writes a normal encoder
folder (``model.safetensors`` + ``config.json``, :func:`models.save_pretrained`) that ``load_pretrained``,
``pretrain finetune`` and ``pretrain evaluate`` use. ``python -m pretrain convert SOURCE CHECKPOINT --out DIR`` is
the same from the shell.

Files are read with ``torch.load(weights_only=True)``: only tensors, plain containers and the few classes a source
names in its allow-list (e.g. ``argparse.Namespace`` for GROVER's ``args``) are unpickled; nothing in the file can
run code. A file of another kind is refused in one line naming it.

Each source registers itself with :func:`register` (one module per source in this package):

    @register("name", "what its checkpoints are", allow=(argparse.Namespace,))
    def build(obj, path) -> tuple[nn.Module, dict]:  # (model made by models.create, extra config entries)
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from models.pretrained import save_pretrained

__all__ = ["ConversionError", "convert", "list_sources", "load_checkpoint", "register"]



class ConversionError(ValueError):
    """A checkpoint that is not of the named source, or does not fit the encoder (one line, names the file)."""


@dataclass(frozen=True)
class Converter:
    name: str
    description: str
    build: Callable[[Any, Path], tuple[nn.Module, dict[str, Any]]]
    allow: tuple[Any, ...] = ()


_CONVERTERS: dict[str, Converter] = {}


def register(name: str, description: str, allow: tuple[Any, ...] = ()) -> Callable:
    def wrap(build: Callable[[Any, Path], tuple[nn.Module, dict[str, Any]]]) -> Callable:
        _CONVERTERS[name] = Converter(name, description, build, tuple(allow))
        return build
    return wrap


def _converters() -> dict[str, Converter]:
    """Every module of this package registers one source; imported on first use (some need optional packages)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _CONVERTERS:
            importlib.import_module(f"{__name__}.{info.name}")
    return _CONVERTERS


def list_sources() -> dict[str, str]:
    """{source: description} of every checkpoint kind ``convert`` reads."""
    return {k: c.description for k, c in sorted(_converters().items())}


def load_checkpoint(path: str | Path, allow: tuple[Any, ...] = (), what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with ``allow`` as the only extra classes; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"{path}: not a {what} this converter reads safely ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(source: str, checkpoint: str | Path, out: str | Path | None = None) -> nn.Module:
    """Convert ``checkpoint`` (written by ``source``'s reference code) to our encoder; write it to ``out`` if given.

    Returns the encoder (eval mode). ``config.json`` records the source, the file name and its SHA-256 under
    ``extra.converted_from``, plus what the source adds (e.g. the sampling rate an ECG-JEPA encoder expects).
    """
    converters = _converters()
    if source not in converters:
        raise ConversionError(f"convert: unknown source {source!r}; known: {', '.join(sorted(converters))}")
    path = Path(checkpoint).expanduser()
    conv = converters[source]
    obj = load_checkpoint(path, conv.allow, f"{source} checkpoint")
    model, extra = conv.build(obj, path)
    model.eval()
    if out is not None:
        provenance = {"source": source, "file": path.name, "sha256": sha256(path)}
        save_pretrained(model, out, extra={**extra, "converted_from": provenance})
    return model
