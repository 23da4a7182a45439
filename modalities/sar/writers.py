"""Despeckled SLCs written in the input's format: ``.npy`` (complex, or float / int16 ``[H, W, 2]`` real/imaginary,
polarisation stacks too) and complex TIFFs (complex float, Sentinel-1 complex int16).

:func:`denoise_sar_files` is the SAR modality's ``denoise_files`` (``python -m pretrain denoise``, and
``RUN/denoised/`` after a run on the user's ``--data``). MERLIN estimates the reflectivity, i.e. the speckle-free
amplitude, not a phase: **a despeckled SLC keeps the original phase**, ``z_out = A_despeckled * z_in / |z_in|``
(pixels with ``z_in == 0``, no-data fill, stay 0). The amplitude is in the input's own scale: the despeckler's log-amplitude
normalisation (saved with the model) is undone inside ``denoise``, so no sensor calibration changes. The output
has the input's shape, layout and dtype (integer parts rounded and clipped).

Memory is bounded for scenes of any size: the amplitude is computed tile by tile into a memory-mapped ``.npy``
(:func:`modalities.sar.tiling.despeckle_scene`), then the output is written in row blocks into a copy of the input
file, memory-mapped for writing, so every byte the format holds besides the pixels (the ``.npy`` header, TIFF tags
and GeoTIFF keys) is kept. Channels of a polarisation stack that ``data.polarisation`` does not select are copied
unchanged. Compressed complex-float TIFFs and TIFFs of separate I and Q samples are read whole (as the reader
does) and written with the same sample layout, compression and tags through tifffile; multi-band complex TIFFs
(polarisation stacks) and compressed complex-integer TIFFs are refused in one line.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from modalities.base import DataError, output_path
from modalities.sar.options import SarOptions
from modalities.sar.readers import SLCFile, _check_npy, find_slc_images, notice, open_slc, stack_info
from modalities.sar.tiling import despeckle_scene

__all__ = ["denoise_sar_files", "despeckled_slc"]

_BLOCK_BYTES = 16 << 20  # rows written per block: about this many bytes of complex64
# GeoTIFF and GDAL tags carried into a re-encoded TIFF (ModelPixelScale, ModelTiepoint, ModelTransformation,
# GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams, GDAL_METADATA, GDAL_NODATA)
_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)


def despeckled_slc(z: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """complex64: ``amplitude`` with the phase of ``z``; 0 where ``z == 0`` (no-data fill, e.g. the zero borders of
    Sentinel-1 bursts, stays no-data). Shapes: [h, w] each."""
    mag = np.abs(z)
    unit = np.where(mag > 0, z / np.where(mag > 0, mag, 1), 0)
    return (amplitude * unit).astype(np.complex64)


def _store(view: Any, r0: int, r1: int, z: np.ndarray, layout: str) -> None:
    """Write complex rows ``z`` into ``view[r0:r1]`` in the file's ``layout``."""
    if layout == "complex":
        view[r0:r1] = z.astype(view.dtype)
        return
    parts = np.stack([z.real, z.imag], -1)
    if layout == "cint16":
        info = np.iinfo(view.dtype)
        parts = np.clip(np.rint(parts), info.min, info.max)
    view[r0:r1] = parts.astype(view.dtype)


#: mean despeckled / input intensity outside this range: the radiometry is off (an under-trained model)
RADIOMETRY_RANGE = (0.5, 2.0)


def _fill(source: SLCFile, view: Any, layout: str, amplitude: np.ndarray, name: str = "") -> None:
    """Write the despeckled SLC row block by row block; warn in one line when the mean despeckled intensity is not
    that of the input (a despeckler keeps the radiometry: the ratio image has mean 1)."""
    h, w = source.shape
    block = max(1, _BLOCK_BYTES // max(1, w * 8))
    noisy_sum = out_sum = 0.0
    for r0 in range(0, h, block):
        r1 = min(h, r0 + block)
        z = source.window(r0, r1, 0, w, check=False)
        a = np.asarray(amplitude[0, r0:r1], dtype=np.float64)
        valid = z != 0  # no-data fill stays zero and is not counted
        noisy_sum += float(np.sum(np.abs(z[valid]).astype(np.float64) ** 2))
        out_sum += float(np.sum(a[valid] ** 2))
        _store(view, r0, r1, despeckled_slc(z, np.asarray(amplitude[0, r0:r1])), layout)
    if noisy_sum > 0:
        gain = out_sum / noisy_sum
        if not RADIOMETRY_RANGE[0] <= gain <= RADIOMETRY_RANGE[1]:
            warnings.warn(f"{name or 'despeckled image'}: mean intensity is {gain:.3g} x the input's (a despeckler keeps "
                          f"it at 1): the model looks under-trained; train longer before using this output",
                          stacklevel=2)


def _writable(src: Path, copy: Path) -> tuple[np.memmap, Any, str] | None:
    """(the copy's memory map opened for writing, its pixels in the layout the reader gives ``src``, that layout),
    or None when the file's pixels are not one contiguous uncompressed block."""
    if src.suffix.lower() == ".npy":
        mm = np.load(copy, mmap_mode="r+", allow_pickle=False)
        f = _check_npy(copy, mm)
        return mm, f.array, f.layout
    if stack_info(src)[0]:  # a multi-band TIFF: read whole by the reader
        return None
    f = open_slc(src)
    if not isinstance(f.array, np.memmap):
        return None
    mm = np.memmap(copy, dtype=f.array.dtype, mode="r+", offset=int(f.array.offset), shape=f.array.shape)
    return mm, mm, f.layout


def _write_file(denoiser: Any, src: Path, dst: Path, bands: list[int | None], stats_window: int, bar: Any) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    amp = dst.with_name(f".{dst.name}.{os.getpid()}.amplitude.npy")
    try:
        shutil.copyfile(src, tmp)
        target = _writable(src, tmp)
        if target is None:
            _write_tiff_whole(denoiser, src, tmp, stats_window, bar)
        else:
            mm, view, layout = target
            for band in bands:
                despeckle_scene(denoiser, src, amp, stats_window, band)
                amplitude = np.load(amp, mmap_mode="r")
                _fill(open_slc(src, band), view if band is None else view[band], layout, amplitude, str(dst))
                del amplitude
                bar.update(1)
            mm.flush()
            del mm, view, target
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
        amp.unlink(missing_ok=True)


def _write_tiff_whole(denoiser: Any, src: Path, tmp: Path, stats_window: int, bar: Any) -> None:
    """A TIFF whose pixels are not one uncompressed block (compressed, tiled, scattered strips) or whose I and Q
    are separate samples (contiguous or planar): read whole, as the reader does, and written by tifffile with the
    same sample layout, compression, strips or tiles and geo tags."""
    import tifffile

    with tifffile.TiffFile(str(src)) as tif:
        page = tif.pages.first
        fmt, spp = int(page.sampleformat), int(page.samplesperpixel)
        if not ((fmt == 6 and spp == 1) or (fmt in (1, 2, 3) and spp == 2)):
            raise DataError(f"{src}: writing this TIFF layout (sample format {fmt}, {spp} samples per pixel, "
                            f"{'compressed' if int(page.compression) != 1 else 'scattered strips'}) is not supported "
                            f"yet; convert it to a complex .npy or an uncompressed complex TIFF")
        extratags = []
        for code in _GEO_TAGS:
            tag = page.tags.get(code)
            if tag is not None:
                extratags.append((code, int(tag.dtype), int(tag.count), tag.value, False))
        kwargs: dict[str, Any] = {"compression": page.compression, "photometric": "minisblack",
                                  "extratags": extratags}
        if page.is_tiled:
            kwargs["tile"] = (int(page.tilelength), int(page.tilewidth))
        elif page.rowsperstrip:
            kwargs["rowsperstrip"] = int(page.rowsperstrip)
        if spp == 2:
            planar = int(page.planarconfig) == 2
            kwargs["planarconfig"] = "separate" if planar else "contig"
            data = np.array(page.asarray())
            pixels = np.moveaxis(data, 0, -1) if planar else data  # [H, W, 2] view of the written array
            layout = "reim" if fmt == 3 else "cint16"
        else:
            data = np.empty((int(page.imagelength), int(page.imagewidth)), page.dtype)
            pixels, layout = data, "complex"
    amp = despeckle_scene(denoiser, src, tmp.with_name(tmp.name + ".amplitude.npy"), stats_window)
    try:
        amplitude = np.load(amp, mmap_mode="r")
        _fill(open_slc(src), pixels, layout, amplitude, src.name)
        del amplitude
        tifffile.imwrite(str(tmp), data, **kwargs)
        bar.update(1)
    finally:
        Path(amp).unlink(missing_ok=True)


def denoise_sar_files(denoiser: Any, data_cfg: Mapping[str, Any], out_dir: Path, run_cfg: Mapping[str, Any],
                      progress: bool = True) -> list[Path]:
    """Despeckle every SLC image under ``data_cfg["path"]`` (``data.polarisation`` picks the channels of stacks)
    with ``denoiser`` (a MERLIN U-Net: ``denoise(x, out=...)`` -> amplitude) and write each file into ``out_dir``
    at its relative path, in its layout and dtype, the despeckled amplitude with the input's phase. Returns the
    written files."""
    from tqdm.auto import tqdm

    opts = SarOptions.of(data_cfg)
    if not opts.path:
        raise DataError("data.path: no SLC data given")
    root = Path(opts.path).expanduser()
    images, decision = find_slc_images(root, opts.polarisation, opts.polarisation_names)
    if decision:
        notice(decision)
    by_file: dict[Path, list[int | None]] = {}
    for im in images:
        by_file.setdefault(im.path, []).append(im.band)
    stats_window = opts.stats_window
    targets = {p: output_path(p, root, out_dir) for p in by_file}
    written: list[Path] = []
    with tqdm(total=len(images), desc="despeckle", unit="image", disable=not progress) as bar:
        for src, bands in by_file.items():
            dst = targets[src]
            dst.parent.mkdir(parents=True, exist_ok=True)
            for band in bands:
                open_slc(src, band).window(0, 1, 0, 1)  # layout errors as one line, before any work
            _write_file(denoiser, src, dst, bands, stats_window, bar)
            written.append(dst)
    return written
