"""Low-dose CT: DICOM / NIfTI / npy slices in Hounsfield units or [0, 1], simulated low dose, Filter2Noise and ZS-N2N.

Slices are read through MONAI's PydicomReader (compressed transfer syntaxes decoded by pylibjpeg), nibabel or
NumPy, rescaled to HU (DICOM) and sorted by position within each series (:mod:`modalities.ct.volumes`); samples are
whole slices or patches in the data's units, with the pixel spacing kept (:mod:`modalities.ct.dataset`).
``data.units`` (``auto`` | ``hu`` | ``unit_interval``, :mod:`modalities.ct.units`) says whether the values are HU or
min-max normalised; ``auto`` decides from DICOM rescale tags and the value range, prints its decision in one line and
writes the resolved value back into the data config (so it lands in the run's config.yaml), and refuses ambiguous
data in one line. ``data.dose_i0`` simulates a low-dose
acquisition of each slice (Poisson counts + electronic noise on its sinogram, filtered back-projection:
:mod:`modalities.ct.lowdose`) and adds the clean reference. The embedded default is the real CT slices shipped in
the ``pydicom-data`` and ``pydicom`` packages (data_cards/pydicom_data_ct.md) at simulated low doses.

Two modes through the one loop (modalities/ct/recipe.yaml): dataset training (one filter for many slices or
patches: the recipe's default) and per-image zero-shot training (``--recipe per_image``: one whole slice, 500 steps
with the authors' settings; the objective filters it once per step).
A run on the user's ``--data`` writes the denoised files in their own format (NIfTI, a new DICOM series, ``.npy``)
into ``RUN/denoised/`` (:mod:`modalities.ct.writers`; other files: ``python -m pretrain denoise RUN --data F``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from modalities.base import DataError, Modality, build_corpus
from modalities.ct.dataset import CTSlices
from modalities.ct.options import CtOptions
from modalities.ct.probes import pydicom_data_ct_files, probe_targets
from modalities.ct.units import resolve_units
from modalities.ct.volumes import index_ct, read_images, read_slice
from modalities.ct.writers import denoise_ct_files

__all__ = ["MODALITY", "CtOptions", "build_dataset", "default_data"]


def build_dataset(data_cfg: Mapping[str, Any], split: str, views: int = 0) -> CTSlices:
    """The CT dataset of ``data_cfg`` (:class:`~modalities.ct.options.CtOptions`, or a mapping of some of them).
    ``data.units: auto`` is resolved here, on the selected slices: the decision is printed once and written into
    ``data_cfg`` when it is a mutable mapping (the loop saves that dict as config.yaml), so the next split and a
    resumed or evaluated run read the declared value."""
    opts = CtOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no CT data given")
    if views:
        raise DataError("objective: CT samples have no augmented views; use filter2noise or zs_n2n")
    refs = index_ct(opts.path)
    chosen = opts.slices
    if chosen is not None:
        chosen = [chosen] if isinstance(chosen, int) else list(chosen)
        bad = [i for i in chosen if not -len(refs) <= i < len(refs)]
        if bad:
            raise DataError(f"data.slices: {bad[0]!r} is not a slice index; {opts.path} has {len(refs)} slices")
        refs = [refs[i] for i in chosen]
    units, decision = resolve_units(refs, opts.units, read_slice)
    if decision:
        print(decision, flush=True)
    opts = opts.replace(units=units)
    if isinstance(data_cfg, MutableMapping):  # the caller's plain dict (the loop's, saved as config.yaml)
        data_cfg["units"] = units
    return CTSlices(refs, split, patch=opts.patch or None, dose_i0=opts.dose_i0, val_fraction=opts.val_fraction,
                    n_angles=opts.n_angles, sigma_e=opts.sigma_e, seed=opts.noise_seed, cache_dir=opts.cache_dir,
                    units=opts.units)


CORPUS_VERSION = 1


def default_data(cache_dir: Path) -> Path:
    """The embedded default: the real CT slices of the installed pydicom-data and pydicom packages, copied once
    into ``cache_dir/pydicom_data`` (see data_cards/pydicom_data_ct.md); the low dose is simulated by the recipe."""
    files = pydicom_data_ct_files()
    out = Path(cache_dir) / "pydicom_data"
    spec = {"source": "pydicom-data + pydicom CT slices", "version": CORPUS_VERSION, "files": sorted(files)}

    def build() -> dict[str, Any]:
        for name, src in files.items():
            shutil.copyfile(src, out / name)
        return {}

    return build_corpus(out, spec, list(files), re.compile(r".*\.dcm"), build)


MODALITY = Modality(
    name="ct",
    description="CT slices (DICOM incl. compressed, NIfTI) in HU; Filter2Noise / ZS-N2N low-dose denoising",
    recipe=Path(__file__).with_name("recipe.yaml"),
    build_dataset=build_dataset,
    default_data=default_data,
    probe_targets=probe_targets,
    sample_kind="image",
    view_augmentations=False,
    denoise_files=denoise_ct_files,
    read_images=read_images,
    options=CtOptions,
)
