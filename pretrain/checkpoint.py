"""Atomic checkpoints: a temp file next to the target, fsync, rename over the old one, fsync of the folder.

A run killed at any moment leaves either the previous checkpoint or the new one, never half a file. The loop never
writes a checkpoint from a state with NaN/Inf parameters (:mod:`pretrain.guards`).

``HOOKS`` are test-only callbacks: ``before_rename(tmp_path, step)`` runs after the temp file is written and before
the rename, ``after_step(step)`` after every optimiser step of the loop (tests/faults.py uses them to kill a run
at a chosen moment); production runs leave them empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["HOOKS", "save_checkpoint"]

HOOKS: dict[str, list[Callable[..., None]]] = {"before_rename": [], "after_step": []}


def run_hooks(kind: str, *args: Any) -> None:
    for hook in HOOKS[kind]:
        hook(*args)


def save_checkpoint(fabric: Any, path: Path, state: dict[str, Any], step: int) -> None:
    """Write ``state`` to ``path`` atomically: a temp file next to it, fsync, then rename over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    fabric.save(tmp, state)
    if fabric.global_rank == 0:
        run_hooks("before_rename", tmp, step)
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    fabric.barrier()
