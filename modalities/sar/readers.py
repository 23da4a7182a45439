"""Single-look complex (SLC) SAR readers: ``.npy`` arrays and complex TIFFs, read lazily.

Accepted layouts (every reader returns a complex64[H, W] array or a lazy window of one):

- ``.npy`` float[H, W, 2] (real, imaginary last: the layout of the MERLIN code and its sample SLC crops);
- ``.npy`` complex64 / complex128 [H, W];
- TIFF / GeoTIFF with complex samples (SampleFormat 6, complex float: GDAL ``CFloat32``/``CFloat64``, SNAP exports);
- Sentinel-1 SAFE ``measurement/*.tiff`` (SampleFormat 5, 32-bit complex integer: int16 I and Q interleaved,
  uncompressed), which numpy has no dtype for: the strips are memory-mapped as int16[H, W, 2].

``.npy`` files and uncompressed TIFFs are memory-mapped, so a window of a large scene reads only its bytes.
Detected (real-valued amplitude or intensity) images, ``[2, H, W]`` arrays and NaN/Inf samples are refused with one
line naming the file (:class:`~modalities.base.DataError`): MERLIN needs the real and imaginary parts.

Multi-polarisation stacks: ``.npy`` float[P, H, W, 2] or complex[P, H, W] (also channel-last complex[H, W, P] and
float[H, W, P, 2], recognised by the small channel axis), and complex TIFFs with several samples per pixel. A
stack is P separate images, one per polarisation; ``data.polarisation`` picks one by index (``1``) or name
(``HV``) or takes ``all`` of them as separate images (:func:`find_slc_images`). Without it a stack is refused in
one line naming the option and listing the channels. Channel names come from ``data.polarisation_names`` or else
from the file name when it lists one name per channel (``scene_HH_HV_VH_VV.npy``, ``..._hhhvvhvv.npy``); there is
no silent default order. A single-image file whose name names one polarisation (a Sentinel-1
``...-slc-vh-...tiff``) is skipped when ``data.polarisation`` names another one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modalities.base import DataError
from modalities.sar.options import SarOptions

__all__ = ["POLARISATIONS", "SLC_SUFFIXES", "SLCFile", "SLCSource", "find_slc_files", "find_slc_images", "notice",
           "open_slc", "polarisation_names", "read_slc", "stack_info"]

SLC_SUFFIXES = (".npy", ".tif", ".tiff")
#: polarisation names recognised in file names and ``data.polarisation``: linear, and compact (circular transmit)
POLARISATIONS = ("HH", "HV", "VH", "VV", "RH", "RV", "LH", "LV")


def notice(msg: str) -> None:
    """One line on stdout saying what was decided (only on the first process of a multi-process run)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0:
        print(msg, flush=True)


@dataclass
class SLCFile:
    """A lazily read SLC scene: ``shape`` (H, W) and ``window(r0, r1, c0, c1)`` -> complex64[h, w].

    ``layout`` is ``"reim"`` (float[H, W, 2]), ``"complex"`` (complex[H, W]) or ``"cint16"`` (int16[H, W, 2]).
    ``band`` / ``name``: the channel of a polarisation stack this image is (None / "" for a single image).
    """

    path: Path
    array: Any
    layout: str
    band: int | None = None
    name: str = ""

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


def _band_axis(shape: tuple[int, ...], path: Path) -> int:
    """The channel axis of an image stack of shape (a, b, c): the first axis when it is the smallest, the last when
    that is (channel-last)."""
    if shape[0] < min(shape[1:]):
        return 0
    if shape[-1] < min(shape[:-1]):
        return len(shape) - 1
    raise DataError(f"{path}: stack of shape {shape}: cannot tell the channel axis; store it as [P, H, W] "
                    f"(complex) or [P, H, W, 2] (real, imaginary last) with P the polarisations")


def _check_npy(path: Path, arr: Any) -> SLCFile:
    """A single image, or a stack as an :class:`SLCFile` whose ``array`` has the channel axis first (a lazy view)
    and ``band`` -1 (the caller picks a channel, :func:`open_slc`)."""
    shape, dtype = tuple(arr.shape), arr.dtype
    if np.issubdtype(dtype, np.complexfloating):
        if len(shape) == 3:
            return SLCFile(path, np.moveaxis(arr, _band_axis(shape, path), 0), "complex", band=-1)
        if len(shape) != 2:
            raise DataError(f"{path}: complex array of shape {shape}; expected complex[H, W] or a polarisation "
                            f"stack complex[P, H, W]")
        return SLCFile(path, arr, "complex")
    if not np.issubdtype(dtype, np.number):
        raise DataError(f"{path}: dtype {dtype} is not numeric; expected float[H, W, 2] or complex[H, W]")
    if len(shape) == 4 and shape[-1] == 2:
        return SLCFile(path, np.moveaxis(arr, _band_axis(shape[:3], path), 0),
                       "reim" if np.issubdtype(dtype, np.floating) else "cint16", band=-1)
    if len(shape) == 3 and shape[-1] == 2:
        return SLCFile(path, arr, "reim" if np.issubdtype(dtype, np.floating) else "cint16")
    if len(shape) == 3 and shape[0] == 2:
        raise DataError(f"{path}: shape {shape} looks like [2, H, W]; the real/imaginary axis must be last "
                        f"([H, W, 2]): use np.moveaxis(a, 0, -1)")
    if len(shape) == 2:
        raise DataError(f"{path}: real-valued {dtype} image {shape} (detected amplitude or intensity?); MERLIN needs "
                        f"single-look complex data: complex[H, W] or real/imaginary parts as [H, W, 2]")
    raise DataError(f"{path}: shape {shape}; expected complex[H, W] or float[H, W, 2] (real, imaginary), or a "
                    f"polarisation stack complex[P, H, W] / float[P, H, W, 2]")


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
        if fmt == 6 and spp > 1:  # complex bands (GDAL multi-band CFloat32): a polarisation stack
            data = page.asarray()
            if data.ndim != 3:
                raise DataError(f"{path}: complex TIFF of shape {data.shape} with {spp} samples per pixel")
            return SLCFile(path, np.moveaxis(data, _band_axis(data.shape, path), 0), "complex", band=-1)
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


def _open_file(path: Path) -> SLCFile:
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


def _name_tokens(path: Path) -> list[str]:
    """Polarisation names in a file name, in order: separate tokens (``_HH_HV_``, ``-vh-``) or one token made only
    of names (``hhhvvhvv``)."""
    out: list[str] = []
    for tok in re.split(r"[^A-Za-z0-9]+", path.name[:-len(path.suffix)] if path.suffix else path.name):
        t = tok.upper()
        if t in POLARISATIONS:
            out.append(t)
        elif len(t) >= 4 and len(t) % 2 == 0 and all(t[i:i + 2] in POLARISATIONS for i in range(0, len(t), 2)):
            out += [t[i:i + 2] for i in range(0, len(t), 2)]
    return out


def polarisation_names(path: str | Path, n: int, declared: Sequence[str] | None = None) -> tuple[list[str], str]:
    """(names of the ``n`` channels of a stack, where they came from): ``declared`` (``data.polarisation_names``),
    else the file name when it lists exactly ``n`` different names, else ``[]`` (unknown)."""
    path = Path(path)
    if declared:
        names = [str(v).upper() for v in declared]
        if len(names) != n:
            raise DataError(f"data.polarisation_names: {len(names)} names for the {n} channels of {path}")
        return names, "data.polarisation_names"
    tokens = _name_tokens(path)
    if len(tokens) == n and len(set(tokens)) == n:
        return tokens, "the file name"
    return [], ""


def stack_info(path: str | Path) -> tuple[int, tuple[int, ...]]:
    """(number of channels, shape with the channel axis first) of the SLC file at ``path``; 0 for a single image."""
    f = _open_file(Path(path))
    return (int(f.array.shape[0]), tuple(f.array.shape)) if f.band == -1 else (0, tuple(f.array.shape))


def _channels(n: int, names: list[str]) -> str:
    return ", ".join(f"{i} {names[i]}" if names else str(i) for i in range(n)) + \
        ("" if names else " (names unknown: data.polarisation_names or a file name such as scene_HH_HV_VH_VV.npy)")


def open_slc(path: str | Path, band: int | None = None, name: str = "") -> SLCFile:
    """Open an SLC file lazily (memory-mapped where possible); layout errors are one-line DataErrors.

    ``band``: the channel of a polarisation stack (a stack without one is refused, naming ``data.polarisation``
    and listing the channels); ``name``: its polarisation, for messages."""
    path = Path(path)
    f = _open_file(path)
    if f.band != -1:
        if band not in (None, 0):
            raise DataError(f"{path}: a single image has no channel {band}")
        return f
    n = int(f.array.shape[0])
    if band is None:
        names = polarisation_names(path, n)[0]
        raise DataError(f"{path}: a stack of {n} polarisations {tuple(f.array.shape)} (channels "
                        f"{_channels(n, names)}); pick one with data.polarisation (index or name) or train on each as a separate image "
                        f"with data.polarisation: all")
    if not 0 <= int(band) < n:
        raise DataError(f"data.polarisation: channel {band} does not exist in {path} (channels "
                        f"{_channels(n, polarisation_names(path, n)[0])})")
    return SLCFile(path, f.array[int(band)], f.layout, int(band), name)


@dataclass(frozen=True)
class SLCSource:
    """One image of a dataset: a file, and the channel of a polarisation stack (``band`` None: a single image)."""

    path: Path
    band: int | None = None
    name: str = ""

    def open(self) -> SLCFile:
        return open_slc(self.path, self.band, self.name)

    @property
    def label(self) -> str:
        """The file name, with the channel of a stack: ``scene.npy[1 HV]``."""
        if self.band is None:
            return self.path.name
        return f"{self.path.name}[{self.band}{' ' + self.name if self.name else ''}]"


def find_slc_images(path: str | Path, polarisation: Any = None, names: Sequence[str] | None = None
                    ) -> tuple[list[SLCSource], str]:
    """The images under ``path`` (:func:`find_slc_files`) for ``data.polarisation``, and a one-line decision ("" when
    there is nothing to decide: single images only and no image skipped).

    ``polarisation``: None (single images only; a stack is refused in one line), ``"all"`` (every channel of every
    stack as a separate image), an index (``1`` / ``"1"``) or a name (``"HV"``, case-insensitive; a single image
    named for another polarisation is skipped). ``names``: ``data.polarisation_names`` for the stacks' channels.
    """
    files = find_slc_files(path)
    want = None if polarisation in (None, "") else str(polarisation).strip()
    if want is not None and want.lower() == "all":
        want = "all"
    index = int(want) if want is not None and want.isdigit() else None
    if want not in (None, "all") and index is None and want.upper() not in POLARISATIONS:
        raise DataError(f"data.polarisation: {polarisation!r} is not 'all', a channel index or a polarisation name "
                        f"({', '.join(POLARISATIONS)})")
    out: list[SLCSource] = []
    stacks: list[str] = []
    skipped: list[str] = []
    for f in files:
        n, shape = stack_info(f)
        if n == 0:
            own = _name_tokens(f)
            if want not in (None, "all") and index is None and len(own) == 1 and own[0] != want.upper():
                skipped.append(f.name)
                continue
            out.append(SLCSource(f))
            continue
        ch, source = polarisation_names(f, n, names)
        stacks.append(f"{f.name}: {n} x {shape[1]} x {shape[2]}, channels {', '.join(ch) if ch else 'unnamed'}"
                      + (f" from {source}" if ch else ""))
        if want is None:
            open_slc(f)  # the one-line refusal naming data.polarisation
        if want == "all":
            out += [SLCSource(f, b, ch[b] if ch else "") for b in range(n)]
        elif index is not None:
            if not 0 <= index < n:
                raise DataError(f"data.polarisation: channel {index} does not exist in {f} (channels "
                                f"{_channels(n, ch)})")
            out.append(SLCSource(f, index, ch[index] if ch else ""))
        else:
            if not ch:
                raise DataError(f"data.polarisation: {want} names a channel, but the channels of {f} are unnamed; "
                                f"set data.polarisation_names (e.g. [HH, HV, VH, VV]), name the file like "
                                f"scene_HH_HV_VH_VV.npy, or give an index 0..{n - 1}")
            if want.upper() not in ch:
                raise DataError(f"data.polarisation: {want} is not a channel of {f} (channels {_channels(n, ch)})")
            b = ch.index(want.upper())
            out.append(SLCSource(f, b, ch[b]))
    if not out:
        raise DataError(f"{path}: no image for data.polarisation={want} ({len(skipped)} file(s) named for another "
                        f"polarisation skipped, e.g. {skipped[0] if skipped else '-'})")
    if not stacks and not skipped:
        if want is None:
            return out, ""
        return out, (f"sar: data.polarisation={want}: no polarisation stack under {path}; {len(out)} single "
                     f"image(s) used as they are")
    parts = [f"sar: data.polarisation={want} -> {len(out)} image(s)"]
    if stacks:
        parts.append(f"{len(stacks)} polarisation stack(s) ({stacks[0]}{'; ...' if len(stacks) > 1 else ''})")
    if skipped:
        parts.append(f"{len(skipped)} single-polarisation file(s) named for another polarisation skipped "
                     f"({skipped[0]}{', ...' if len(skipped) > 1 else ''})")
    return out, "; ".join(parts)


def read_slc(path: str | Path, band: int | None = None) -> np.ndarray:
    """The whole SLC image at ``path`` (the channel ``band`` of a stack) as complex64[H, W]."""
    return open_slc(path, band).read()


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


def read_images(path: str | Path, data_cfg: Any = None) -> dict[str, np.ndarray]:
    """The amplitude (float64[H, W]) of every image under ``path``, keyed by the file's path relative to ``path``
    (``""`` for a single file) plus ``#<channel>`` for a polarisation stack (``Modality.read_images``: what
    ``evaluate --reference`` compares). Complex SLCs give their modulus. A real-valued image (a clean reference)
    is an amplitude unless ``data.reference_values`` is ``intensity``; the simulator's ``*_clean.npy`` files hold
    the expected intensity and are always read as such."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    values = SarOptions.of(data_cfg).reference_values
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                  and p.suffix.lower() in SLC_SUFFIXES)
    out: dict[str, np.ndarray] = {}
    for f in files:
        rel = "" if root.is_file() else f.relative_to(root).as_posix()
        try:
            n, _ = stack_info(f)
        except DataError:
            n = 0
        try:
            bands = [None] if n == 0 else list(range(n))
            for b in bands:
                out[rel + ("" if b is None else f"#{b}")] = np.abs(read_slc(f, b)).astype(np.float64)
        except DataError:  # a real-valued image: a clean reference
            a = np.load(f) if f.suffix.lower() == ".npy" else _read_tiff(f)
            a = np.squeeze(np.asarray(a, dtype=np.float64))
            if a.ndim != 2 or np.iscomplexobj(a):
                raise DataError(f"{f}: expected an SLC or a real-valued [H, W] image, got shape {a.shape}") from None
            out[rel] = np.sqrt(np.maximum(a, 0)) if values == "intensity" or f.name.endswith("_clean.npy") else a
    if not out:
        raise DataError(f"{root}: no SAR images ({', '.join(SLC_SUFFIXES)}) found")
    return out


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception as e:  # tifffile raises its own errors for malformed files
        raise DataError(f"{path}: unreadable TIFF ({type(e).__name__}: {str(e)[:80]})") from None
