"""Single-look complex (SLC) SAR readers: ``.npy`` arrays and complex TIFFs, read lazily.

Accepted layouts (every reader returns a complex64[H, W] array or a lazy window of one):

- ``.npy`` float[H, W, 2] (real, imaginary last: the layout of the MERLIN code and of ``../shared/data/sar``);
- ``.npy`` complex64 / complex128 [H, W];
- TIFF / GeoTIFF with complex samples (SampleFormat 6, complex float: GDAL ``CFloat32``/``CFloat64``, SNAP exports);
- Sentinel-1 SAFE ``measurement/*.tiff`` (SampleFormat 5, 32-bit complex integer: int16 I and Q interleaved,
  uncompressed), which numpy has no dtype for: the strips are memory-mapped as int16[H, W, 2].

``.npy`` files and uncompressed TIFFs are memory-mapped, so a window of a large scene reads only its bytes.
Detected (real-valued amplitude or intensity) images, ``[2, H, W]`` arrays and NaN/Inf samples are refused with one
line naming the file (:class:`~modalities.base.DataError`): MERLIN needs the real and imaginary parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalities.base import DataError

__all__ = ["SLC_SUFFIXES", "SLCFile", "find_slc_files", "open_slc", "read_slc"]

SLC_SUFFIXES = (".npy", ".tif", ".tiff")


@dataclass
class SLCFile:
    """A lazily read SLC scene: ``shape`` (H, W) and ``window(r0, r1, c0, c1)`` -> complex64[h, w].

    ``layout`` is ``"reim"`` (float[H, W, 2]), ``"complex"`` (complex[H, W]) or ``"cint16"`` (int16[H, W, 2]).
    """

    path: Path
    array: Any
    layout: str

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    def window(self, r0: int, r1: int, c0: int, c1: int, check: bool = True) -> np.ndarray:
        block = np.asarray(self.array[r0:r1, c0:c1])
        if self.layout == "complex":
            z = block.astype(np.complex64)
        else:
            z = block[..., 0].astype(np.float32) + 1j * block[..., 1].astype(np.float32)
            z = z.astype(np.complex64)
        if check:
            bad = ~np.isfinite(z)
            if bad.any():
                rows, cols = np.nonzero(bad)
                raise DataError(f"{self.path}: {int(bad.sum())} NaN/Inf samples (first at row {r0 + int(rows[0])}, "
                                f"column {c0 + int(cols[0])}); mask or fill them before despeckling")
        return z

    def read(self) -> np.ndarray:
        """The whole scene as complex64[H, W] (checked for NaN/Inf)."""
        return self.window(0, self.shape[0], 0, self.shape[1])

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """``scene[r0:r1, c0:c1]`` -> complex64 window (the array-like protocol of ``MerlinUNet.denoise``)."""
        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        return self.window(r0, r1, c0, c1)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.complex64)


def _check_npy(path: Path, arr: Any) -> SLCFile:
    shape, dtype = tuple(arr.shape), arr.dtype
    if np.issubdtype(dtype, np.complexfloating):
        if len(shape) != 2:
            raise DataError(f"{path}: complex array of shape {shape}; expected one complex[H, W] image")
        return SLCFile(path, arr, "complex")
    if not np.issubdtype(dtype, np.number):
        raise DataError(f"{path}: dtype {dtype} is not numeric; expected float[H, W, 2] or complex[H, W]")
    if len(shape) == 3 and shape[-1] == 2:
        return SLCFile(path, arr, "reim" if np.issubdtype(dtype, np.floating) else "cint16")
    if len(shape) == 3 and shape[0] == 2:
        raise DataError(f"{path}: shape {shape} looks like [2, H, W]; the real/imaginary axis must be last "
                        f"([H, W, 2]): use np.moveaxis(a, 0, -1)")
    if len(shape) == 2:
        raise DataError(f"{path}: real-valued {dtype} image {shape} (detected amplitude or intensity?); MERLIN needs "
                        f"single-look complex data: complex[H, W] or real/imaginary parts as [H, W, 2]")
    raise DataError(f"{path}: shape {shape}; expected complex[H, W] or float[H, W, 2] (real, imaginary)")


def _open_tiff(path: Path) -> SLCFile:
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path))
    except Exception as e:  # not a TIFF, truncated header
        raise DataError(f"{path}: cannot read TIFF ({type(e).__name__}: {str(e)[:100]})") from None
    with tif:
        page = tif.pages.first
        fmt, bits, spp = int(page.sampleformat), int(page.bitspersample), int(page.samplesperpixel)
        shape = (int(page.imagelength), int(page.imagewidth))
        if fmt == 5:  # complex integer: numpy has no dtype, tifffile cannot decode it
            if bits != 32 or spp != 1:
                raise DataError(f"{path}: complex-integer TIFF with {bits} bits x {spp} samples; only Sentinel-1's "
                                f"32-bit (int16 I, int16 Q) is supported")
            if int(page.compression) != 1:
                raise DataError(f"{path}: compressed complex-integer TIFF; Sentinel-1 measurement files are not "
                                f"compressed (re-export it uncompressed)")
            return SLCFile(path, _cint16_strips(path, page, tif.byteorder, shape), "cint16")
        if fmt == 6:  # complex float
            if page.is_contiguous and int(page.compression) == 1:
                arr = np.memmap(path, dtype=np.dtype(page.dtype).newbyteorder(tif.byteorder), mode="r",
                                offset=int(page.dataoffsets[0]), shape=shape)
            else:
                arr = page.asarray()
            return SLCFile(path, arr, "complex")
        if spp == 2 and fmt in (1, 2, 3):
            data = page.asarray()
            if data.shape[-1] != 2:  # planar storage: [2, H, W]
                data = np.moveaxis(data, 0, -1)
            return SLCFile(path, data, "reim" if fmt == 3 else "cint16")
    raise DataError(f"{path}: TIFF of real {page.dtype} samples ({spp} per pixel), a detected (amplitude or "
                    f"intensity) image?; MERLIN needs single-look complex data (complex samples, or I and Q)")


def _cint16_strips(path: Path, page: Any, byteorder: str, shape: tuple[int, int]) -> Any:
    """int16[H, W, 2] view of an uncompressed complex-int16 TIFF: one memory map when the strips are contiguous
    (Sentinel-1 measurement files are), else the strips read and stacked."""
    dtype = np.dtype("i2").newbyteorder(byteorder)
    if page.is_contiguous:
        return np.memmap(path, dtype=dtype, mode="r", offset=int(page.dataoffsets[0]), shape=(*shape, 2))
    rows_per_strip = int(page.rowsperstrip or shape[0])
    out = np.empty((*shape, 2), np.int16)
    with open(path, "rb") as f:
        for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            f.seek(offset)
            strip = np.frombuffer(f.read(count), dtype=dtype)
            r0 = i * rows_per_strip
            n = min(rows_per_strip, shape[0] - r0)
            out[r0:r0 + n] = strip[:n * shape[1] * 2].reshape(n, shape[1], 2)
    return out


def open_slc(path: str | Path) -> SLCFile:
    """Open an SLC file lazily (memory-mapped where possible); layout errors are one-line DataErrors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: not a plain .npy array ({str(e)[:100]})") from None
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e})") from None
        return _check_npy(path, arr)
    if suffix in (".tif", ".tiff"):
        return _open_tiff(path)
    raise DataError(f"{path}: unknown SLC format {suffix!r}; expected {', '.join(SLC_SUFFIXES)}")


def read_slc(path: str | Path) -> np.ndarray:
    """The whole SLC image at ``path`` as complex64[H, W]."""
    return open_slc(path).read()


def find_slc_files(path: str | Path) -> list[Path]:
    """SLC files under ``path`` (a file, or a folder searched recursively), sorted; clean references written by
    the simulator (``*_clean.npy``) are skipped."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SLC_SUFFIXES
                   and not p.name.endswith("_clean.npy"))
    if not files:
        raise DataError(f"{path}: no SLC files ({', '.join(SLC_SUFFIXES)}) found")
    return files
