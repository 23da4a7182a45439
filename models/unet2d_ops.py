"""The MERLIN U-Net's fast inference operations on a CPU (:meth:`models.unet2d.MerlinUNet.residual_subpixel`): 2x2
max-pooling as strided maxima, the 32 -> 1 convolution as nine shifted sums, and each decoder's nearest-2x upsampling
folded into its convolution at the low resolution (four phase kernels). Each equals the plain layers to float
rounding (tests/models/test_unet2d.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TAPS", "conv3x3_to_one", "max_pool2x2", "upsampled_conv"]


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)`` for even H, W as two maxima of strided views. Shapes: [..., H, W] -> [..., H/2, W/2]."""
    cols = torch.maximum(x[..., 0::2], x[..., 1::2])
    return torch.maximum(cols[..., 0::2, :], cols[..., 1::2, :])


def conv3x3_to_one(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A zero-padded 3x3 convolution to one output channel as a 1x1 convolution to its nine taps followed by nine
    shifted sums (oneDNN runs the 32 -> 1 convolution at ~3 GFLOP/s here, 4x slower than this).
    Shapes: float[B, C, H, W] -> float[B, 1, H, W]."""
    if conv.out_channels != 1 or conv.kernel_size != (3, 3) or conv.bias is None:
        return conv(x)
    h, w = x.shape[-2:]
    taps = F.pad(F.conv2d(x, conv.weight[0].permute(1, 2, 0).reshape(9, -1, 1, 1)), (1, 1, 1, 1))
    out = taps[:, 0:1, 0:h, 0:w] + conv.bias.view(1, 1, 1, 1)
    for t in range(1, 9):
        di, dj = divmod(t, 3)
        out = out.add_(taps[:, t:t + 1, di:di + h, dj:dj + w])
    return out


# which 3x3 taps of one axis land on each low-resolution tap of a nearest 2x upsampling, per output parity
TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],    # even output 2i: rows i - 1, i
                      [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])   # odd output 2i + 1: rows i, i + 1


def upsampled_conv(conv: nn.Conv2d, phases: torch.Tensor, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``conv(cat([upsample_nearest_2x(low), skip]))`` computed at ``low``'s resolution for its part, with the
    phase kernels ``phases`` of :meth:`MerlinUNet.subpixel_kernels`. Shapes: low float[B, C, h, w], skip
    float[B, S, 2h, 2w] -> float[B, O, 2h, 2w]."""
    b, c, h, w = low.shape
    out_c = conv.out_channels
    padded = F.pad(low, (1, 1, 1, 1))
    # parity a reads low-resolution rows i - 1 + a and i + a: rows a .. a + h of the padded map (columns alike);
    # four separate convolutions run ~20 % faster here than one with 4 O outputs and need no output slicing
    ph = phases.view(2, 2, out_c, c, 2, 2)
    rows = [torch.stack([F.conv2d(padded[:, :, pa:pa + h + 1, pb:pb + w + 1], ph[pa, pb]) for pb in (0, 1)], dim=-1)
            for pa in (0, 1)]
    up = torch.stack(rows, dim=3).reshape(b, out_c, 2 * h, 2 * w)
    weight, bias = conv.weight[:, c:], conv.bias
    if skip.shape[1] == 1 and bias is not None:
        # a one-channel skip (the input) as a [O, 9 + 1] x [9 + 1, pixels] product added in place: oneDNN's 1 -> 64
        # channel convolution takes 110 ms at 256^2 on this AVX2 CPU (1 -> 32: 11 ms), the product ~15 ms
        taps = torch.cat([F.unfold(skip, 3, padding=1), skip.new_ones(b, 1, 4 * h * w)], dim=1)  # [B, 10, HW]
        mat = torch.cat([weight.reshape(out_c, 9), bias[:, None]], dim=1).expand(b, out_c, 10)
        up.view(b, out_c, 4 * h * w).baddbmm_(mat, taps)
        return up
    return up.add_(F.conv2d(skip, weight, bias, padding=1))
