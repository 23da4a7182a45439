"""The denoising probe: real CT slices at simulated low doses, with their clean references.

The slices are the three real 512 x 512 CT slices of the installed ``pydicom-data`` package (head CT from CQ500,
neck CT with a JPEG-lossless transfer syntax, abdominal CT from TCIA Pancreas-CT in JPEG 2000), each at the doses
``data.probe_doses`` (default I0 = 1e5, 5e4, 2.5e4: :class:`~modalities.ct.options.CtOptions`). PSNR and SSIM are
computed in the soft-tissue window [-160, 240] HU (data range 400 HU); the noise std is measured in the most uniform
24 x 24 soft-tissue box of each clean slice. The probe is label-free with respect to training: the clean references are only used for scoring.

A run on unit-interval data (``data.units: unit_interval``) trained its denoiser on [0, 1] images: the probe then
gives the same slices, clean references and window mapped into those units through
:data:`modalities.ct.units.UNIT_INTERVAL_HU` (PSNR in the mapped soft-tissue window, as the training monitor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from modalities.base import DataError, ProbeSet
from modalities.ct.dataset import CTSlices
from modalities.ct.options import CtOptions
from modalities.ct.units import hu_to_units, resolve_units
from modalities.ct.volumes import HU_WINDOWS, index_ct, read_slice

__all__ = ["PROBE_SLICES", "probe_targets", "pydicom_data_ct_files", "uniform_box"]

PROBE_SLICES = ("693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm")


def pydicom_data_ct_files() -> dict[str, str]:
    """name -> path of the CT slices shipped in the installed packages: the three real 512 x 512 slices of
    pydicom-data (:data:`PROBE_SLICES`) and pydicom's 128 x 128 ``CT_small.dcm``."""
    try:
        import data_store
    except ImportError:
        raise DataError("the embedded CT default needs the pydicom-data package (pip install pydicom-data)") from None
    from pydicom.data import get_testdata_file

    root = Path(data_store.__file__).parent / "data"
    files = {name: str(root / name) for name in PROBE_SLICES}
    missing = [p for p in files.values() if not Path(p).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: missing from the installed pydicom-data package")
    files["CT_small.dcm"] = str(get_testdata_file("CT_small.dcm"))
    return files


def uniform_box(clean: np.ndarray, size: int = 24, hu_range: tuple[float, float] = (-100.0, 150.0)) -> tuple[int, ...]:
    """(row0, row1, col0, col1) of the ``size`` x ``size`` box (stride size / 2) with the smallest std among boxes
    whose mean lies in ``hu_range`` (soft tissue), falling back to any box."""
    h, w = clean.shape
    best, best_any = None, None
    step = max(1, size // 2)
    for r in range(0, h - size + 1, step):
        for c in range(0, w - size + 1, step):
            block = clean[r:r + size, c:c + size]
            sd, mu = float(block.std()), float(block.mean())
            if best_any is None or sd < best_any[0]:
                best_any = (sd, (r, r + size, c, c + size))
            if hu_range[0] <= mu <= hu_range[1] and (best is None or sd < best[0]):
                best = (sd, (r, r + size, c, c + size))
    return (best or best_any)[1]


def probe_targets(data_cfg: Mapping[str, Any], data_path: Path | None = None) -> dict[str, ProbeSet]:
    """``{"lowdose_real_slices": ProbeSet(task="denoising")}``: noisy float32[1, H, W] inputs and clean
    references for every slice x dose, in HU or in the run's ``data.units`` (see the module docstring); with
    ``units: auto`` (evaluating on other files) in the units detected on ``data_path``."""
    opts = CtOptions.of(data_cfg)
    units = opts.units
    if units == "auto":  # evaluated on other files (their conventions are detected again): follow those files
        units = "hu"
        if data_path is not None:
            try:
                units = resolve_units(index_ct(data_path), "auto", read_slice)[0]
            except DataError:
                pass  # the dataset built from those files says what is wrong, in one line
    files = pydicom_data_ct_files()
    refs = [index_ct(files[name])[0] for name in PROBE_SLICES]
    doses = list(opts.probe_doses)
    ds = CTSlices(refs, "train", patch=None, dose_i0=doses, val_fraction=0.0, n_angles=opts.n_angles,
                  sigma_e=opts.sigma_e, seed=opts.noise_seed, cache_dir=opts.cache_dir)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    names: list[str] = []
    boxes: list[list[tuple[int, ...]]] = []
    for k in range(len(ds)):
        s = ds[k]
        xs.append(s["image"] if units == "hu" else hu_to_units(s["image"], units))
        ys.append(s["clean"] if units == "hu" else hu_to_units(s["clean"], units))
        names.append(f"{Path(s['meta']['file']).stem} I0={s['meta']['dose_i0']:.3g}")
        boxes.append([uniform_box(s["clean"][0].numpy())])
    hu_window = HU_WINDOWS["soft_tissue"]
    window = tuple(float(hu_to_units(v, units)) for v in hu_window)
    unit_note = "HU" if units == "hu" else f"(= {hu_window[0]:g}..{hu_window[1]:g} HU mapped to the unit interval)"
    chosen = opts.slices
    per_image = ""
    if chosen is not None and len([chosen] if isinstance(chosen, int) else list(chosen)) == 1:
        per_image = ("; this run fitted one filter to one image (per-image mode), so these other slices, at other "
                     f"noise levels{'' if units == 'hu' else ' and in HU mapped to its units'}, measure how it "
                     "transfers, not how it did on its own image (see 'Your data')")
    return {"lowdose_real_slices": ProbeSet(
        x_train=[], y_train=[], x_test=xs, y_test=ys, task="denoising", source="installed packages pydicom-data / "
        "pydicom: 3 real CT slices at simulated doses",
        description=(f"{len(PROBE_SLICES)} real CT slices (pydicom-data) x I0 in {doses}: simulated low dose vs "
                     f"the noise-free reconstruction; PSNR/SSIM in [{window[0]:.4g}, {window[1]:.4g}] {unit_note}"
                     f"{per_image}"),
        meta={"data_range": window[1] - window[0], "window": window, "uniform_regions": boxes, "names": names,
              "doses": doses})}
