"""SAR: single-look complex (SLC) images, MERLIN self-supervised despeckling, honest metrics with and without truth.

- Readers (:mod:`modalities.sar.readers`): ``[H, W, 2]`` real/imaginary ``.npy``, complex64/128 ``.npy``, complex
  GeoTIFF and Sentinel-1 SAFE measurement TIFFs (complex int16), memory-mapped; detected images, ``[2, H, W]``
  arrays and NaNs are refused in one line. Polarisation stacks (``[P, H, W, 2]`` / complex ``[P, H, W]``) need
  ``data.polarisation``: an index, a name (``HV``) or ``all`` (each channel a separate image).
- Doppler centring and spectral symmetrisation (:mod:`modalities.sar.doppler`) so that real and imaginary parts are
  independent, the premise of MERLIN.
- Patches and sensor statistics (:mod:`modalities.sar.patches`): the log-amplitude range of the normalisation is
  estimated from the training scenes and saved with the model (``config.json``), not hard-coded per sensor.
- Embedded default (:mod:`modalities.sar.simulate`): correlated complex speckle (a Hamming-weighted sensor transfer
  function with a Doppler offset) over the pictures that ship in scikit-image.
- Probes (:mod:`modalities.sar.probes`): PSNR/SSIM on simulated speckle, ENL and ratio-image statistics on real
  crops, against boxcar, Lee and refined Lee (:mod:`modalities.sar.baselines`). ENL boxes are 48 x 48, smaller
  (down to 8 x 8) when none fits a small scene; the report names the box size.
- Large scenes (:mod:`modalities.sar.tiling`): tiled, bounded-memory despeckling of files larger than memory.
- Output (:mod:`modalities.sar.writers`): despeckled SLCs in the input's layout and dtype, with the input's phase
  (``RUN/denoised/`` after a run on ``--data``; ``python -m pretrain denoise RUN --data F`` for other files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modalities.base import DataError, Modality
from modalities.sar.options import SarOptions
from modalities.sar.patches import SLCPatches
from modalities.sar.probes import probe_targets
from modalities.sar.readers import notice, read_images
from modalities.sar.simulate import simulate_corpus
from modalities.sar.writers import denoise_sar_files


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> SLCPatches:
    """The SAR dataset of ``data_cfg`` (:class:`~modalities.sar.options.SarOptions`, or a mapping of some of them)."""
    opts = SarOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no SLC data given")
    if views:
        raise DataError("objective: SAR samples have no augmented views; use merlin")
    ds = SLCPatches(opts.path, split=split, patch=opts.patch, val_fraction=opts.val_fraction,
                    patches_per_scene=opts.patches_per_scene, stats_window=opts.stats_window,
                    polarisation=opts.polarisation, polarisation_names=opts.polarisation_names)
    if ds.decision and split == "train":
        notice(ds.decision)
    return ds


def default_data(cache_dir: Path) -> Path:
    """The embedded default: simulated SLCs over scikit-image pictures (see data_cards/sar_speckle_simulator.md)."""
    return simulate_corpus(Path(cache_dir) / "sarsim")


MODALITY = Modality(
    name="sar",
    description="SAR single-look complex images (npy, complex GeoTIFF, Sentinel-1 SAFE); MERLIN despeckling",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="image",
    view_augmentations=False,
    denoise_files=denoise_sar_files,
    read_images=read_images,
    options=SarOptions,
)
