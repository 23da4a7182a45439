"""Collectives for losses that need the whole (multi-process) batch, with gradients.

Every loss that uses batch statistics (Barlow Twins' cross-correlation, VICReg's variance and covariance,
InfoNCE's negatives, KoLeo's nearest neighbours) goes through this one module, so that a run on W processes
optimises the same objective as one process on the concatenated batch.

Gradient convention. Under DDP every process back-propagates its own loss and DDP *averages* parameter
gradients over the W processes. The collectives below therefore send back, to each process, the *sum* over
processes of the gradients that reach their outputs: for a loss computed identically on every process this
gives W times the true gradient of its local inputs, and DDP's average divides the W out. The rule for a loss
built on them is: the mean over processes of the per-process losses must equal the single-process loss on
the concatenated batch; then every gradient is right after DDP's averaging.

The classic bug is a plain :func:`torch.distributed.all_gather` / ``all_reduce``: their outputs carry no
gradient, so the other processes' losses stop contributing to this process's embeddings and the run
silently optimises a different (per-process) objective. ``tests/pretrain/objectives/test_distributed_losses.py``
checks that such a gather fails the equivalence test.

``torch.distributed.nn.functional.all_gather`` / ``all_reduce`` implement the same maths but are deprecated
in torch 2.13 (a ``FutureWarning`` on every call), so the two small autograd functions below are used
instead. All processes must pass tensors of the same shape (the ``DistributedSampler`` used under DDP gives
every process the same number of samples per step).

>>> import torch
>>> x = torch.randn(4, 3, requires_grad=True)
>>> gather_with_grad(x).shape  # identity when not distributed
torch.Size([4, 3])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "GlobalBatchNorm",
    "all_reduce_sum_with_grad",
    "convert_batch_norm",
    "full_precision",
    "gather_objects",
    "gather_rows_with_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a default process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """``cat`` over processes along dim 0; backward sums the incoming gradients and keeps this slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        # Every process holds a gradient for every slice; the gradient of this process's input is the sum
        # over processes of their gradients of its slice.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


class _AllReduceSumWithGrad(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum over processes of the output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of every process along dim 0, with gradients flowing back to every process.

    Shapes: ``x`` ``[n, ...]`` (the same on every process) -> ``[W * n, ...]``, this process's rows at
    ``rank() * n``. The identity when not distributed.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over processes, with gradients flowing back to every process. The identity when not
    distributed."""
    if not is_distributed():
        return x
    return _AllReduceSumWithGrad.apply(x)


def gather_objects(items: list[Any]) -> list[Any]:
    """Concatenate a picklable list of every process in rank order (e.g. subject ids of the local batch)."""
    if not is_distributed():
        return list(items)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (float64 stays float64): losses on batch statistics take bf16 projector
    outputs to full precision (and run their matmuls with autocast disabled)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gather_rows_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` for processes holding *different* numbers of rows (e.g. the matched points of
    point clouds): ``[n_r, ...]`` on process ``r`` -> ``[sum_r n_r, ...]`` in rank order, with gradients. The rows
    are padded to the largest ``n_r`` for the collective and the padding is dropped. The identity when not
    distributed."""
    if not is_distributed():
        return x
    sizes = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    parts = [torch.empty_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sizes)
    counts = [int(p) for p in parts]
    most = max(counts)
    padded = x if x.shape[0] == most else torch.cat([x, x.new_zeros((most - x.shape[0], *x.shape[1:]))])
    full = _GatherWithGrad.apply(padded)
    return torch.cat([full[r * most: r * most + n] for r, n in enumerate(counts)])


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics are those of the whole multi-process batch.

    Under DDP a plain BatchNorm normalises each process's share with its own mean and variance, so W processes
    train a different network from one process on the same batch (and point clouds, whose shares hold different
    numbers of points, weight them unequally). Here the per-channel sums ``sum x`` and then ``sum (x - mean)^2``
    and the element counts are summed over processes with gradients (:func:`all_reduce_sum_with_grad`), which
    is exact for any share sizes and works on CPU (gloo), unlike ``torch.nn.SyncBatchNorm``. Running statistics
    follow ``nn.BatchNorm`` (unbiased variance of the global batch). Outside DDP, or in eval mode, it is
    ``nn.BatchNorm`` itself (same kernel, same numbers). State-dict keys are those of ``nn.BatchNorm1d/2d/3d``.

    Input ``[N, C, *]``; statistics over every dimension but ``C``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1, *([1] * (input.dim() - 2))]
        x = full_precision(input)
        local = torch.cat([x.sum(dims), x.new_tensor([float(input.numel() // max(1, input.shape[1]))])])
        total = all_reduce_sum_with_grad(local)
        n = total[-1].detach()
        mean = total[:-1] / n.clamp_min(1.0)
        centred = x - mean.view(shape)
        var = all_reduce_sum_with_grad(centred.pow(2).sum(dims)) / n.clamp_min(1.0)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * n / (n - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        return y.to(input.dtype)


def convert_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` inside ``module`` (or ``module`` itself) by a
    :class:`GlobalBatchNorm` sharing its parameters and buffers; returns the converted module. Idempotent.

    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    >>> type(convert_batch_norm(net)[1]).__name__
    'GlobalBatchNorm'
    """
    bn_types = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    if isinstance(module, bn_types) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=None, dtype=None)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_batch_norm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
