"""Denoised CT written in the input's format and geometry: NIfTI -> NIfTI, a DICOM file or series -> a new DICOM
series, ``.npy`` slices -> ``.npy``.

:func:`denoise_ct_files` is the CT modality's ``denoise_files`` (``python -m pretrain denoise``, and the files a
denoiser run writes into ``RUN/denoised/``). Slices are read and denoised one at a time, so memory holds one slice
and the denoiser's activations, whatever the volume size. Each output lands at the input's path relative to the
``--data`` folder (a single file: its name) and is written to a temporary name first, renamed when complete.

- NIfTI: same shape, axis order, affine and header (sform / qform codes, pixdim, xyzt units). Integer volumes keep
  their on-disk dtype and ``scl_slope`` / ``scl_inter``: the denoised values are mapped back to stored values,
  rounded and clipped to the dtype's range, so they read back in the input's units; float volumes keep their dtype.
- DICOM: every file becomes a file of a new series (one new SeriesInstanceUID per input series, a new
  SOPInstanceUID per file; ImageType DERIVED\\SECONDARY, a SeriesDescription and DerivationDescription that say
  what was done, a SourceImageSequence pointing at the input slice). Pixels are re-encoded uncompressed (explicit VR
  little endian) in the input's stored dtype with its RescaleSlope / RescaleIntercept, so HU are kept; stored values
  are clipped to the range the input's BitsStored / PixelRepresentation allow, and pixels equal to
  PixelPaddingValue (outside the field of view) keep it. Every other element is kept.
- ``.npy``: same shape and dtype (integers rounded and clipped).

Every slice of every file is denoised (``data.slices`` chooses what a run trains on, not what it writes).

Units: the denoiser takes and returns the units of the data it was trained on (``hu`` or ``unit_interval``,
:mod:`modalities.ct.units`); files in the other units are mapped there and back through
:data:`~modalities.ct.units.UNIT_INTERVAL_HU`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from modalities.base import DataError, output_path
from modalities.ct.options import CtOptions
from modalities.ct.units import UNIT_INTERVAL_HU, hu_to_units, resolve_units
from modalities.ct.volumes import SliceRef, index_ct, read_slice

__all__ = ["denoise_ct_files", "method_name"]

_METHODS = {"filter2noise": "Filter2Noise", "zs_n2n": "ZS-N2N"}


def method_name(run_cfg: Mapping[str, Any]) -> str:
    """The denoising method of a run, for headers: ``Filter2Noise`` / ``ZS-N2N`` (else the objective's name)."""
    name = str((run_cfg.get("objective") or {}).get("name", "denoiser"))
    return _METHODS.get(name, name)


def _units_to_hu(x: np.ndarray, units: str) -> np.ndarray:
    if units == "unit_interval":
        lo, hi = UNIT_INTERVAL_HU
        return x * (hi - lo) + lo
    return x


def _converter(file_units: str, model_units: str) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                            Callable[[np.ndarray], np.ndarray]]:
    """(file units -> model units, model units -> file units)."""
    if file_units == model_units:
        return (lambda a: a), (lambda a: a)
    return (lambda a: np.asarray(hu_to_units(_units_to_hu(a, file_units), model_units), np.float32),
            lambda a: np.asarray(hu_to_units(_units_to_hu(a, model_units), file_units), np.float32))


def _device(denoiser: Any) -> Any:
    try:
        return next(denoiser.parameters()).device
    except (AttributeError, StopIteration):
        return "cpu"


def _denoise_slice(denoiser: Any, x: np.ndarray) -> np.ndarray:
    """float32[H, W] in the model's units -> the denoised float32[H, W] in the same units."""
    import torch

    with torch.inference_mode():
        t = torch.from_numpy(np.array(x, np.float32))[None].to(_device(denoiser))
        out = denoiser.denoise(t)
        out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    out = np.asarray(out, np.float32).reshape(x.shape)
    if not np.isfinite(out).all():
        raise DataError(f"denoise: the denoiser returned NaN/Inf on a {x.shape[0]}x{x.shape[1]} slice")
    return out


def _to_dtype(values: np.ndarray, dtype: np.dtype, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``values`` in ``dtype``: integers rounded and clipped to the dtype's range (narrowed by ``lo`` / ``hi``)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo = info.min if lo is None else max(lo, info.min)
        hi = info.max if hi is None else min(hi, info.max)
        return np.clip(np.rint(values), lo, hi).astype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    raise DataError(f"denoise: cannot write values of dtype {dtype}")


def _tmp(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{os.getpid()}.tmp")


def denoise_ct_files(denoiser: Any, data_cfg: Mapping[str, Any], out_dir: Path, run_cfg: Mapping[str, Any],
                     progress: bool = True) -> list[Path]:
    """Denoise every CT slice under ``data_cfg["path"]`` with ``denoiser`` (``denoise(x)`` on float[1, H, W] in the
    units of the run's data ``run_cfg["data"]["units"]``) and write each file into ``out_dir`` at its relative path,
    in its format. Returns the written files (one per input file)."""
    from tqdm.auto import tqdm

    opts = CtOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no CT data given")
    root = Path(opts.path).expanduser()
    refs = index_ct(root)
    units, decision = resolve_units(refs, opts.units, read_slice)
    if decision:
        print(decision, flush=True)
    model_units = CtOptions.of(run_cfg.get("data") or {}).units  # the run's resolved units (auto: an older run)
    if model_units not in ("hu", "unit_interval"):
        model_units = "hu"
    to_model, from_model = _converter(units, model_units)
    by_file: dict[str, list[SliceRef]] = {}
    for r in refs:
        by_file.setdefault(r.path, []).append(r)
    targets = {p: output_path(Path(p), root, out_dir) for p in by_file}

    def run(x: np.ndarray) -> np.ndarray:
        missing = ~np.isfinite(x)  # NaN outside the field of view of some float volumes: kept NaN
        if missing.all():
            return x
        if missing.any():
            x = np.where(missing, np.min(x[~missing]), x)
        out = from_model(_denoise_slice(denoiser, to_model(x)))
        return np.where(missing, np.nan, out).astype(np.float32) if missing.any() else out

    series_uids: dict[str, str] = {}
    written: list[Path] = []
    bar = tqdm(total=len(refs), desc="denoise", unit="slice", disable=not progress)
    try:
        for path, file_refs in by_file.items():
            dst = targets[path]
            dst.parent.mkdir(parents=True, exist_ok=True)
            name = path.lower()
            if name.endswith((".nii", ".nii.gz")):
                _write_nifti(Path(path), dst, file_refs, run, bar)
            elif name.endswith(".npy"):
                _write_npy(Path(path), dst, file_refs, run, bar)
            else:
                _write_dicom(Path(path), dst, file_refs, run, bar, series_uids, method_name(run_cfg))
            written.append(dst)
    finally:
        bar.close()
    return written


# ------------------------------------------------------------------------------------------------------- NIfTI

def _write_nifti(src: Path, dst: Path, refs: list[SliceRef], run: Callable, bar: Any) -> None:
    import nibabel as nib

    img = nib.load(str(src))
    dtype = np.dtype(img.get_data_dtype())
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    scaled = dtype.kind in "iu"
    work = _tmp(dst).with_suffix(".npy")
    tmp = dst.with_name(f".{os.getpid()}.tmp.{dst.name}")  # nibabel picks gzip from the name's suffix
    out = np.lib.format.open_memmap(work, mode="w+", dtype=dtype, shape=img.shape)
    try:
        for ref in refs:
            den = run(read_slice(ref))  # [H, W] = data[:, :, k].T
            stored = (den.T.astype(np.float64) - inter) / slope if scaled else den.T
            k = (slice(None), slice(None), ref.index) + (0,) * (len(img.shape) - 3) if len(img.shape) > 2 \
                else (slice(None), slice(None))
            out[k] = _to_dtype(stored, dtype)
            bar.update(1)
        out.flush()
        new = type(img)(out, None, img.header.copy())  # NIfTI-1 or -2, as the input
        # the constructor resets scaling; stored values are already scaled: write the input's slope / intercept
        new.header.set_slope_inter(slope if scaled else 1.0, inter if scaled else 0.0)
        new.header.set_data_dtype(dtype)
        nib.save(new, str(tmp))
        tmp.replace(dst)
    finally:
        del out
        work.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------------- npy

def _write_npy(src: Path, dst: Path, refs: list[SliceRef], run: Callable, bar: Any) -> None:
    a = np.load(str(src), mmap_mode="r", allow_pickle=False)
    tmp = _tmp(dst)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=a.dtype, shape=a.shape)
    try:
        for ref in refs:
            den = run(read_slice(ref))
            if a.ndim == 3:
                out[ref.index] = _to_dtype(den, a.dtype)
            else:
                out[...] = _to_dtype(den, a.dtype)
            bar.update(1)
        out.flush()
        del out
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------------- DICOM

def _stored_dtype(ds: Any, src: Path) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32):
        raise DataError(f"{src}: BitsAllocated {bits}; only 8, 16 or 32-bit integer CT pixels can be written")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _stored_range(ds: Any, dtype: np.dtype) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", dtype.itemsize * 8) or dtype.itemsize * 8)
    if dtype.kind == "i":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _lo(text: str) -> str:
    return text if len(text) <= 64 else text[:61] + "..."


def _write_dicom(src: Path, dst: Path, refs: list[SliceRef], run: Callable, bar: Any, series_uids: dict[str, str],
                 method: str) -> None:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(str(src))
        except Exception as e:
            raise DataError(f"{src}: not a readable DICOM file ({type(e).__name__}: {str(e)[:100]})") from None
    if "PixelData" not in ds:
        raise DataError(f"{src}: DICOM pixels are not integer PixelData (float pixel data cannot be written back)")
    if "RescaleSlope" not in ds and ("SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds):
        raise DataError(f"{src}: enhanced multi-frame CT (rescale per frame in functional groups) cannot be written "
                        f"back yet; convert it to single-frame slices or NIfTI")
    dtype = _stored_dtype(ds, src)
    lo, hi = _stored_range(ds, dtype)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            original = np.asarray(ds.pixel_array).reshape(frames, rows, cols)
        except Exception as e:
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            raise DataError(f"{src}: cannot decode pixel data ({getattr(syntax, 'name', syntax)}): "
                            f"{type(e).__name__}: {str(e)[:100]}") from None
    padding = ds.get("PixelPaddingValue")
    out = np.empty((frames, rows, cols), dtype)
    for ref in refs:
        den = run(read_slice(ref))
        stored = _to_dtype((den.astype(np.float64) - inter) / slope, dtype, lo, hi)
        if padding is not None:
            pad = original[ref.index] == int(padding)
            stored[pad] = original[ref.index][pad]
        out[ref.index] = stored
        bar.update(1)
    with _quiet_pydicom():
        series_key = str(ds.get("SeriesInstanceUID", "") or src.parent)
    _rewrite_header(ds, out, series_key, series_uids, method)
    tmp = _tmp(dst)
    try:
        with _quiet_pydicom():  # anonymised inputs carry non-conformant UIDs, kept as they are
            ds.save_as(str(tmp), enforce_file_format=True)
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """No validation warnings (logged and warned) for values kept from the input, such as anonymised UIDs."""
    from pydicom import config

    before = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = before


def _rewrite_header(ds: Any, out: np.ndarray, series_key: str, series_uids: dict[str, str], method: str) -> None:
    """Put the denoised stored values ``out`` int[frames, rows, cols] into ``ds`` (uncompressed, explicit VR little
    endian) and make it an instance of a new derived series; every other element stays."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    with _quiet_pydicom():
        old_sop = str(ds.get("SOPInstanceUID", ""))
        sop_class = ds.get("SOPClassUID")
        bits_stored = int(ds.get("BitsStored", out.dtype.itemsize * 8) or out.dtype.itemsize * 8)
        ds.set_pixel_data(out[0] if len(out) == 1 else out, str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
                          bits_stored)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # set_pixel_data keeps an uncompressed input's syntax
        for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):  # stale after denoising
            if tag in ds:
                del ds[tag]
        series_uid = series_uids.setdefault(series_key, generate_uid())
        sop_uid = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        original_desc = str(ds.get("SeriesDescription", "") or "").strip()
        ds.SeriesDescription = _lo(f"{original_desc + ' ' if original_desc else ''}denoised ({method}, modalities)")
        ds.DerivationDescription = (f"Denoised with {method} (self-supervised, trained on noisy data only) by the "
                                    f"modalities library; pixels re-encoded uncompressed, rescale unchanged")
        image_type = [str(v) for v in (ds.get("ImageType") or [])]
        ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
        if old_sop and sop_class is not None:
            source = Dataset()
            source.ReferencedSOPClassUID = sop_class
            source.ReferencedSOPInstanceUID = old_sop
            ds.SourceImageSequence = [source]
