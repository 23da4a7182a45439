"""Denoised output files of a denoiser run (being built: see issue 23)."""

from __future__ import annotations

from pathlib import Path

from pretrain.config import ConfigError


def write_run_outputs(run_dir: Path, progress: bool = True) -> Path | None:
    return None


def denoise_files(run_dir: Path, data: str | None = None, out: str | None = None, progress: bool = True) -> list[Path]:
    raise ConfigError("denoise: not available yet")
