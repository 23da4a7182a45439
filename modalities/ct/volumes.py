"""CT readers: DICOM files and series, and NIfTI volumes, read slice by slice in Hounsfield units.

- DICOM pixels are decoded through MONAI's ``LoadImage(reader=PydicomReader())`` (pydicom underneath, with
  pylibjpeg for the JPEG-lossless and JPEG 2000 transfer syntaxes) and rescaled to HU with the file's
  RescaleSlope / RescaleIntercept; headers are read with pydicom (``stop_before_pixels``) to index, check and sort.
- A folder is indexed recursively. DICOM slices are grouped by SeriesInstanceUID and sorted by their position
  along the slice normal, ``ImagePositionPatient . (row direction x column direction)`` from
  ImageOrientationPatient (InstanceNumber where positions are missing). Multi-frame files give one slice per frame.
- NIfTI (``.nii``/``.nii.gz``) volumes are read lazily per slice through nibabel's array proxy (scaled by
  ``scl_slope``/``scl_inter``); slice ``k`` is ``data[:, :, k].T`` (rows = y). CT NIfTI usually holds HU, but
  min-max normalised volumes ([0, 1]) exist: ``data.units`` (:mod:`modalities.ct.units`) tells them apart.
- NumPy ``.npy`` arrays: float[H, W] (one slice) or float[N, H, W] (N slices along the first axis), memory-mapped;
  they carry no geometry, so pixel spacing is taken as 1 mm. In a folder they are read only when it holds no
  DICOM or NIfTI slice.

Every slice keeps its pixel spacing (row, column) in mm and the series' slice spacing. A DICOM slice records in
``meta["rescale"]`` whether it carries RescaleSlope / RescaleIntercept (then its values are HU). A file that cannot
be read (truncated, corrupt) raises :class:`~modalities.base.DataError` with one line that names it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from modalities.base import DataError

__all__ = ["HU_WINDOWS", "MIN_SIZE", "SliceRef", "apply_window", "index_ct", "read_dicom_hu", "read_slice"]

# (low, high) HU of the usual display windows (width / level)
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (-160.0, 240.0),  # W 400 L 40
    "brain": (0.0, 80.0),  # W 80 L 40
    "lung": (-1350.0, 150.0),  # W 1500 L -600
    "bone": (-450.0, 1050.0),  # W 1500 L 300
    "full": (-1024.0, 3071.0),  # the 12-bit CT range
}
MIN_SIZE = 8  # the smallest slice side the denoisers accept (one 8 x 8 sigma patch)
_NIFTI = (".nii", ".nii.gz")
_NPY = (".npy",)
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def apply_window(hu: np.ndarray, window: str | tuple[float, float]) -> np.ndarray:
    """Clip HU to a named window of :data:`HU_WINDOWS` or a (low, high) pair and map it to [0, 1]."""
    if isinstance(window, str):
        if window not in HU_WINDOWS:
            raise DataError(f"window: unknown HU window {window!r}; known: {', '.join(HU_WINDOWS)}")
        window = HU_WINDOWS[window]
    lo, hi = float(window[0]), float(window[1])
    if not lo < hi:
        raise DataError(f"window: need low < high, got {[lo, hi]}")
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


@dataclass(frozen=True)
class SliceRef:
    """One 2-D CT slice: a file, the frame (DICOM multi-frame) or index along z (NIfTI) inside it, and geometry."""

    path: str
    index: int
    rows: int
    cols: int
    spacing: tuple[float, float]  # (row, column) pixel spacing, mm
    slice_spacing: float = float("nan")  # distance to the neighbouring slice of the series, mm
    position: float = float("nan")  # along the slice normal, mm
    series: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{Path(self.path).name}:{self.index}"


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    if path.suffix:
        return False
    try:  # extension-less files: the DICM magic after the 128-byte preamble
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _dicom_header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():  # anonymised files carry non-conformant UIDs: not our users' problem
            warnings.simplefilter("ignore")
            return pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable DICOM file ({type(e).__name__}: {str(e)[:100]})") from None


def _check_ct(path: Path, ds: Any, pixel_tag_present: bool) -> None:
    modality = str(ds.get("Modality", "")).strip()
    if modality != "CT":
        raise DataError(f"{path}: DICOM Modality is {modality or 'missing'!r}, not 'CT'")
    if not pixel_tag_present:
        raise DataError(f"{path}: DICOM file has no pixel data (no PixelData element)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < MIN_SIZE or cols < MIN_SIZE:
        raise DataError(f"{path}: image is {rows}x{cols}; CT slices need at least {MIN_SIZE}x{MIN_SIZE} pixels")


def _has_pixels(path: Path) -> bool:
    """Whether the file holds a pixel data element (read up to it, without loading it)."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(str(path), specific_tags=list(_PIXEL_TAGS))
        except Exception as e:  # truncated inside the header or a corrupt element
            raise DataError(f"{path}: not a readable DICOM file ({type(e).__name__}: {str(e)[:100]})") from None
    return any(t in ds for t in _PIXEL_TAGS)


def _dicom_refs(path: Path) -> list[SliceRef]:
    with warnings.catch_warnings():  # values are converted on access: anonymised UIDs warn here
        warnings.simplefilter("ignore")
        return _dicom_refs_of(path, _dicom_header(path))


def _dicom_refs_of(path: Path, ds: Any) -> list[SliceRef]:
    _check_ct(path, ds, _has_pixels(path))
    spacing = ds.get("PixelSpacing") or [1.0, 1.0]
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    ipp = ds.get("ImagePositionPatient")
    iop = ds.get("ImageOrientationPatient")
    position = float("nan")
    if ipp is not None and iop is not None and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        position = float(np.dot(np.asarray(ipp, float), normal))
    elif ipp is not None:
        position = float(ipp[2])
    meta = {"instance": int(ds.get("InstanceNumber", 0) or 0), "kvp": float(ds.get("KVP", 0) or 0),
            "kernel": str(ds.get("ConvolutionKernel", "") or ""), "slice_thickness": float(ds.get("SliceThickness", 0) or 0),
            "rescale": "RescaleSlope" in ds or "RescaleIntercept" in ds}
    series = str(ds.get("SeriesInstanceUID", "") or path.parent)
    return [SliceRef(str(path), k, int(ds.Rows), int(ds.Columns), (float(spacing[0]), float(spacing[1])),
                     float(ds.get("SpacingBetweenSlices", 0) or 0) or float("nan"), position, series, dict(meta))
            for k in range(frames)]


def _nifti_refs(path: Path) -> list[SliceRef]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises several types for corrupt headers
        raise DataError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {str(e)[:100]})") from None
    shape = img.shape
    if len(shape) < 2:
        raise DataError(f"{path}: NIfTI image has {len(shape)} dimension(s); need a 2-D slice or a 3-D volume")
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise DataError(f"{path}: NIfTI image is {len(shape)}-D {shape}; only 2-D / 3-D CT volumes are read")
    if shape[0] < MIN_SIZE or shape[1] < MIN_SIZE:
        raise DataError(f"{path}: image is {shape[1]}x{shape[0]}; CT slices need at least {MIN_SIZE}x{MIN_SIZE} pixels")
    zooms = img.header.get_zooms()
    dz = float(zooms[2]) if len(zooms) > 2 else float("nan")
    n = shape[2] if len(shape) > 2 else 1
    return [SliceRef(str(path), k, int(shape[1]), int(shape[0]), (float(zooms[1]), float(zooms[0])), dz, k * dz,
                     str(path)) for k in range(n)]


def _npy_refs(path: Path) -> list[SliceRef]:
    a = _open_npy(path)
    if a.ndim not in (2, 3):
        raise DataError(f"{path}: array is {a.ndim}-D {a.shape}; need a slice [H, W] or slices [N, H, W]")
    if a.dtype.kind not in "iuf":
        raise DataError(f"{path}: array dtype {a.dtype} is not a real number type")
    h, w = a.shape[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise DataError(f"{path}: image is {h}x{w}; CT slices need at least {MIN_SIZE}x{MIN_SIZE} pixels")
    n = a.shape[0] if a.ndim == 3 else 1
    return [SliceRef(str(path), k, int(h), int(w), (1.0, 1.0), float("nan"), float(k), str(path)) for k in range(n)]


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(str(path), mmap_mode="r", allow_pickle=False)
    except Exception as e:  # truncated file, object array, not an .npy at all
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__}: {str(e)[:100]})") from None


def _files(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            yield p


def index_ct(path: str | Path) -> list[SliceRef]:
    """Every CT slice under ``path`` (a file or a folder searched recursively), series by series, each series
    sorted along its slice normal. In a folder, non-CT DICOM files (another Modality, no pixel data) are skipped,
    and ``.npy`` arrays are read only when the folder holds no DICOM or NIfTI slice (they are often masks, caches
    or renders beside the images); a single file that is not a readable CT slice raises :class:`DataError`, as does
    a folder with none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: path does not exist")
    single = path.is_file()
    refs: list[SliceRef] = []
    skipped: list[str] = []
    arrays: list[Path] = []
    for f in _files(path):
        name = f.name.lower()
        try:
            if name.endswith(_NIFTI):
                refs.extend(_nifti_refs(f))
            elif name.endswith(_NPY):
                arrays.append(f)
            elif _is_dicom(f):
                refs.extend(_dicom_refs(f))
            elif single:
                raise DataError(f"{f}: not a DICOM (.dcm), NIfTI (.nii/.nii.gz) or NumPy (.npy) file")
        except DataError as e:
            if single:
                raise
            skipped.append(str(e))
    if not refs:
        for f in arrays:
            try:
                refs.extend(_npy_refs(f))
            except DataError as e:
                if single:
                    raise
                skipped.append(str(e))
    if not refs:
        why = f"; skipped: {skipped[0]}" + (f" (+{len(skipped) - 1} more)" if len(skipped) > 1 else "") if skipped else ""
        raise DataError(f"{path}: no CT slices found (DICOM .dcm, NIfTI .nii/.nii.gz or .npy){why}")
    return _sort_series(refs)


def _sort_series(refs: list[SliceRef]) -> list[SliceRef]:
    by_series: dict[str, list[SliceRef]] = {}
    for r in refs:
        by_series.setdefault(r.series, []).append(r)
    out: list[SliceRef] = []
    for series in sorted(by_series):
        group = by_series[series]
        group.sort(key=lambda r: (np.nan_to_num(r.position, nan=0.0), r.meta.get("instance", 0), r.path, r.index))
        positions = np.array([r.position for r in group], float)
        gaps = np.diff(positions)
        gaps = gaps[np.isfinite(gaps) & (np.abs(gaps) > 1e-6)]
        dz = float(np.median(np.abs(gaps))) if gaps.size else float("nan")
        for r in group:
            if np.isfinite(dz):  # measured positions win over the SpacingBetweenSlices tag
                r = SliceRef(r.path, r.index, r.rows, r.cols, r.spacing, dz, r.position, r.series, r.meta)
            out.append(r)
    return out


def read_dicom_hu(path: str | Path, frame: int = 0) -> np.ndarray:
    """float32[H, W] HU of one DICOM slice (frame), decoded by MONAI's PydicomReader (any transfer syntax that
    pydicom + pylibjpeg decode) and rescaled by RescaleSlope / RescaleIntercept."""
    path = Path(path)
    ds = _dicom_header(path)
    _check_ct(path, ds, _has_pixels(path))
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = LoadImage(reader=PydicomReader(), image_only=True)(str(path))
        except Exception as e:  # a codec missing or a corrupt stream: name the file and the transfer syntax
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(syntax, "name", str(syntax))
            raise DataError(f"{path}: cannot decode pixel data ({name}): {type(e).__name__}: {str(e)[:100]}") from None
    a = np.asarray(img, dtype=np.float32)
    # MONAI stores spatial axes as (x, y[, frame]): rows are its second axis
    a = a[..., frame] if a.ndim == 3 else a
    return np.ascontiguousarray(a.T)


def read_slice(ref: SliceRef) -> np.ndarray:
    """float32[H, W] of a slice from :func:`index_ct`, in the file's units (DICOM: HU by its rescale tags)."""
    name = ref.path.lower()
    if name.endswith(_NIFTI):
        import nibabel as nib

        try:
            img = nib.load(ref.path)
            data = img.dataobj[:, :, ref.index] if len(img.shape) > 2 else img.dataobj[:, :]
            data = np.asarray(data, dtype=np.float32)
        except Exception as e:  # a truncated .nii.gz ends in gzip's EOFError; a cut .nii in a short read
            what = "truncated or corrupt" if isinstance(e, (EOFError, OSError, ValueError)) else "unreadable"
            raise DataError(f"{ref.path}: {what} NIfTI data, slice {ref.index} cannot be read "
                            f"({type(e).__name__}: {str(e)[:100]})") from None
        return np.ascontiguousarray(data.reshape(img.shape[0], img.shape[1]).T)
    if name.endswith(_NPY):
        a = _open_npy(Path(ref.path))
        try:
            return np.ascontiguousarray(np.asarray(a[ref.index] if a.ndim == 3 else a, dtype=np.float32))
        except Exception as e:
            raise DataError(f"{ref.path}: truncated or corrupt .npy data ({type(e).__name__}: {str(e)[:100]})") from None
    return read_dicom_hu(ref.path, ref.index)


def read_images(path: str | Path, data_cfg: Any = None) -> dict[str, np.ndarray]:
    """Every slice under ``path`` as float64[H, W] in the file's units, keyed by the file's path relative to
    ``path`` (``""`` for a single file) plus ``#<slice>`` in files holding several slices (``Modality.read_images``:
    what ``evaluate --reference`` compares)."""
    root = Path(path).expanduser()
    refs = index_ct(root)
    per_file: dict[str, int] = {}
    for r in refs:
        per_file[r.path] = per_file.get(r.path, 0) + 1
    out: dict[str, np.ndarray] = {}
    for r in refs:
        rel = "" if root.is_file() else Path(r.path).relative_to(root).as_posix()
        out[rel + (f"#{r.index}" if per_file[r.path] > 1 else "")] = read_slice(r).astype(np.float64)
    return out
