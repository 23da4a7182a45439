"""Denoised output files of a denoiser run: ``python -m pretrain denoise RUN --data IN --out OUT``, and
``RUN/denoised/`` written after training on the user's ``--data``.

For the users of the denoisers (CT Filter2Noise / ZS-N2N, SAR MERLIN) the denoised image is the product: each input
file is written back in its own format and geometry, at its path relative to ``--data`` (a single file: its name),
by the modality's ``denoise_files`` (:mod:`modalities.ct.writers`, :mod:`modalities.sar.writers`). Images are
processed slice by slice (CT) or tile by tile (SAR scenes), so memory does not grow with the data.

Layout of ``RUN/denoised/`` for ``--data scan.nii.gz``: ``RUN/denoised/scan.nii.gz``; for ``--data DIR`` holding
``a/1.dcm``, ``a/2.dcm``, ``b.npy``: ``RUN/denoised/a/1.dcm``, ``RUN/denoised/a/2.dcm``, ``RUN/denoised/b.npy``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from modalities.base import DataError
from pretrain.config import ConfigError

__all__ = ["denoise_files", "embedded_or_simulated", "write_run_outputs"]


def _load_run(run_dir: Path) -> tuple[Any, Any]:
    import modalities
    from pretrain.config import load_run_config

    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_run_config(config)
    try:
        modality = modalities.get(cfg.modality)
    except Exception:
        raise ConfigError(f"{config}: unknown modality {cfg.modality!r}") from None
    return cfg, modality


def _is_denoiser(modality: Any) -> bool:
    return getattr(modality, "denoise_files", None) is not None


def _not_denoiser(run_dir: Path, cfg: Any) -> ConfigError:
    return ConfigError(f"{run_dir}: a {cfg.modality} run (objective {cfg.objective.get('name')}) is not a denoiser; "
                       f"denoise needs a CT (filter2noise / zs_n2n) or SAR (merlin) run")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def denoise_files(run_dir: str | Path, data: str | Path | None = None, out: str | Path | None = None,
                  progress: bool = True) -> list[Path]:
    """Denoise every image of ``data`` (a file or folder; default: the run's own ``data.path``) with the run's
    denoiser and write each into ``out`` (default ``run_dir/denoised``) at its relative path, in its format and
    geometry. Files other than the run's have their conventions (CT units, ...) detected again. Returns the
    written files. Refuses in one line a run that is not a denoiser, a missing or unreadable input, and an output
    that would overwrite (or sit inside) the input."""
    import torch

    import models
    from modalities.base import for_other_files

    run_dir = Path(run_dir)
    cfg, modality = _load_run(run_dir)
    if not _is_denoiser(modality):
        raise _not_denoiser(run_dir, cfg)
    data_cfg = dict(cfg.data)
    own = data_cfg.get("path")
    if data is None:
        if not own:
            raise ConfigError(f"{run_dir / 'config.yaml'}: data.path is empty; give --data")
        src = Path(str(own)).expanduser()
        if not src.exists():
            raise DataError(f"{src}: the run's data (data.path) no longer exists; give --data")
    else:
        src = Path(data).expanduser()
        if not src.exists():
            raise DataError(f"--data {data}: no such file or folder")
        if not own or src.resolve() != Path(str(own)).expanduser().resolve():
            # other files: their conventions (CT units, polarisation names, ...) are detected again
            data_cfg = for_other_files(data_cfg, modality.options)
    src = src.resolve()
    data_cfg["path"] = str(src)
    out_dir = (Path(out).expanduser() if out is not None else run_dir / "denoised").resolve()
    if out_dir == src:
        raise ConfigError(f"--out {out_dir}: is the input itself; the outputs would overwrite it: choose another folder")
    if src.is_dir() and _inside(out_dir, src):
        raise ConfigError(f"--out {out_dir}: is inside the input folder {src}; the outputs would be read as inputs "
                          f"next time: choose a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    encoder_dir = run_dir / "encoder"
    if not (encoder_dir / "config.json").is_file():
        raise ConfigError(f"{encoder_dir}: no exported denoiser (config.json missing): did the run finish?")
    denoiser = models.load_pretrained(encoder_dir)
    if not callable(getattr(denoiser, "denoise", None)):
        raise _not_denoiser(run_dir, cfg)
    if torch.cuda.is_available():
        denoiser = denoiser.cuda()
    denoiser.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    return list(modality.denoise_files(denoiser, data_cfg, out_dir, cfg.to_dict(), progress))


def embedded_or_simulated(data_cfg: Any, modality_name: str) -> bool:
    """Whether ``data_cfg`` is our demo data (the embedded default, under the cache) or simulated noise
    (``data.dose_i0``): then the noisy input is not the user's and there is nothing of theirs to write or score."""
    from modalities.base import cache_root

    if data_cfg.get("dose_i0"):
        return True
    path = data_cfg.get("path")
    if not path:
        return True
    return _inside(Path(str(path)).expanduser().resolve(), (cache_root() / modality_name).resolve())


def write_run_outputs(run_dir: str | Path, progress: bool = True) -> Path | None:
    """After training (the CLI, on rank 0): a denoiser run on the user's ``--data`` writes the denoised data into
    ``run_dir/denoised/`` and returns that folder. Runs of other objectives, and runs on the embedded default or on
    simulated low doses (the noisy input is ours, not the user's), write nothing and return None; so does a run whose
    data cannot be written back (one warning line naming the file: the trained denoiser is saved all the same)."""
    run_dir = Path(run_dir)
    cfg, modality = _load_run(run_dir)
    if not _is_denoiser(modality) or embedded_or_simulated(cfg.data, cfg.modality):
        return None
    out = run_dir / "denoised"
    try:
        denoise_files(run_dir, out=out, progress=progress)
    except (DataError, ConfigError) as e:  # training succeeded and is saved: say why there is no output, in one line
        print(f"warning: {out} not written: {e}", file=sys.stderr, flush=True)
        return None
    return out
