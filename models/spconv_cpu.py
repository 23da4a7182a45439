"""Make spconv 2.3.8 train correctly on a CPU-only machine.

The CPU wheel of spconv 2.3.8 has two defects (found here and verified against dense ``conv3d``):

1. **Backward needs CUDA.** ``spconv.pytorch.ops.indice_conv_backward`` calls
   ``cppcore.get_current_stream()`` unconditionally, which calls ``torch.cuda.current_stream()`` and fails
   on a torch build without CUDA. The CPU kernels ignore the stream, so stream ``0`` is correct.
2. **Racy scatter-add.** The CPU gather-GEMM-scatter path accumulates each kernel offset's partial
   products with ``SpconvOps.scatter_add_cpu``, parallelised over rows without atomics: with more than one
   intra-op thread two rows that target the same output site race, so forward outputs and input gradients
   are wrong (max error ~0.7; weight gradients are right because they are plain GEMMs). torch's
   ``scatter_add_`` with a row index expanded over the channels takes its sorted-index path (radix sort of the
   targets, then a segmented sum per target row), which is race-free and ~100x faster here than ``index_add_``
   (whose CPU kernel adds one row at a time: 130 ms vs 1 ms for 10k rows x 32 channels on 2 threads).

:func:`apply_cpu_fixes` patches both, only when CUDA is unavailable (on a CUDA machine spconv uses its GPU
kernels and nothing is touched), and is idempotent. ``models.sparse_unet`` calls it on import, so any
encoder built on spconv through ``models`` is correct on a CPU without the caller doing anything.
"""

from __future__ import annotations

import torch

_PATCH_MARK = "_modalities_cpu_fixes"


def _null_stream() -> int:
    return 0


def _as_torch(t) -> torch.Tensor:  # noqa: ANN001 (cumm tensorview.Tensor has no stub)
    """A zero-copy torch view of a CPU ``tv.Tensor`` (numpy is the bridge both libraries share)."""
    return torch.from_numpy(t.numpy_view())


def _scatter_add_rows(out, inp, inds) -> None:  # noqa: ANN001
    """``out[inds[i]] += inp[i]`` for ``i < len(inds)``, race-free (sorted-index ``scatter_add_``)."""
    idx = _as_torch(inds)
    n = idx.shape[0]
    if n == 0:
        return
    dst = _as_torch(out)
    dst.scatter_add_(0, idx.long()[:, None].expand(n, dst.shape[1]), _as_torch(inp)[:n])


def cpu_fixes_applied() -> bool:
    """True when this process runs spconv with the two CPU fixes in place."""
    import spconv.pytorch.ops as ops

    return bool(getattr(ops, _PATCH_MARK, False))


def apply_cpu_fixes() -> bool:
    """Patch spconv's CPU path (stream lookup and scatter-add); returns True if the fixes are in effect.

    Does nothing (and returns False) when ``torch.cuda.is_available()``. Calling it twice is harmless.
    """
    if torch.cuda.is_available():
        return False
    import spconv.pytorch.cppcore as cppcore
    import spconv.pytorch.ops as ops

    if getattr(ops, _PATCH_MARK, False):
        return True
    # Every module that did ``from cppcore import get_current_stream`` holds its own reference.
    import importlib

    for name in ("cppcore", "ops", "hash", "conv", "functional", "pool", "utils"):
        try:
            mod = importlib.import_module(f"spconv.pytorch.{name}")
        except ImportError:
            continue
        if hasattr(mod, "get_current_stream"):
            mod.get_current_stream = _null_stream
    cppcore.get_current_stream = _null_stream

    base_ops = ops.SpconvOps

    class _RaceFreeSpconvOps(base_ops):  # type: ignore[misc, valid-type]
        """spconv's ops with a race-free CPU scatter-add; every other static method is inherited."""

        scatter_add_cpu = staticmethod(_scatter_add_rows)

    ops.SpconvOps = _RaceFreeSpconvOps
    setattr(ops, _PATCH_MARK, True)
    return True


__all__ = ["apply_cpu_fixes", "cpu_fixes_applied"]
