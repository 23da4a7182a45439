"""A real low/normal-dose CT pair stored the way the Filter2Noise authors ship theirs: min-max normalised to [0, 1].

The abdominal slice of ../shared/data/ct (TCIA Pancreas-CT, HU, 0.86 mm pixels) is averaged over 4 x 4 blocks to
128 x 128 (3.4 mm pixels; the whole body and the air around it stay in the image) so that training tests stay fast,
a low dose is simulated with the library's own simulator (:func:`modalities.ct.lowdose.simulate_low_dose`), and
both images are mapped to [0, 1] by the noisy image's min and max: the noisy one is written as a NIfTI slice, the
clean one is the reference of the PSNR (data range 1, both clipped to [0, 1]).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from tests.conftest import shared_data

SLICE = "tcia_pancreas_ct_explicit_VR-UN_HU_512.npy"
PIXEL_MM = 0.859375  # of the 512 x 512 slice (explicit_VR-UN.dcm)
FACTOR = 4
I0 = 2.5e4


@lru_cache(maxsize=2)
def _pair(i0: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    from modalities.ct.lowdose import simulate_low_dose

    hu = np.load(shared_data("ct") / SLICE).astype(np.float64)
    n = hu.shape[0] // FACTOR
    small = hu.reshape(n, FACTOR, n, FACTOR).mean((1, 3))
    clean, (noisy,) = simulate_low_dose(small, PIXEL_MM * FACTOR, i0, seed=0, n_angles=180)
    lo, hi = float(noisy.min()), float(noisy.max())
    return ((noisy - lo) / (hi - lo)).astype(np.float32), ((clean - lo) / (hi - lo)).astype(np.float32), (lo, hi)


def unit_interval_pair(i0: float = I0) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(noisy float32[128, 128] in [0, 1], clean reference in the same units, (HU min, HU max) of the mapping)."""
    noisy, clean, span = _pair(float(i0))
    return noisy.copy(), clean.copy(), span


def write_nifti(path: Path, image: np.ndarray, pixel_mm: float = PIXEL_MM * FACTOR) -> Path:
    """``image`` float[H, W] as a one-slice NIfTI that :func:`modalities.ct.volumes.read_slice` reads back as is."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(image, np.float32).T[:, :, None], np.diag([pixel_mm, pixel_mm, 5.0, 1.0])),
             str(path))
    return Path(path)


def unit_interval_nifti(tmp_path: Path, i0: float = I0) -> tuple[Path, np.ndarray, np.ndarray]:
    """(path of the noisy [0, 1] NIfTI in ``tmp_path``, noisy, clean)."""
    noisy, clean, _ = unit_interval_pair(i0)
    return write_nifti(Path(tmp_path) / "lowdose_minmax.nii.gz", noisy), noisy, clean


def psnr01(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two [0, 1] images, both clipped to [0, 1], data range 1."""
    a = np.clip(np.asarray(a, np.float64), 0, 1)
    b = np.clip(np.asarray(b, np.float64), 0, 1)
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20)))
