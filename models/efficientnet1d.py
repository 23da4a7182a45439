"""1-D EfficientNet for wearable biosignals (Abbaspourazad et al., "Large-scale Training of Foundation Models
for Wearable Biosignals", ICLR 2024; blocks from Tan & Le, "EfficientNet", ICML 2019).

The network is a convolutional stem, 16 mobile inverted-bottleneck blocks (MBConv) in seven stages (the
EfficientNet-B0 table: repeats 1, 2, 2, 3, 3, 4, 1; widths 16 ... 320), a 1x1 head convolution, global average
pooling over time and a linear layer to a 256-d embedding. Every convolution is 1-D, so a depthwise kernel of
size k costs k weights per channel (not k^2); with the last two stage widths narrowed to 176 and 256 and a
384-wide head the network has ~3.2M parameters, the size of the paper's PPG encoder.

One MBConv block with input ``x`` [B, C_in, T], expansion e, kernel k and stride s::

    h = swish(BN(W_expand x))                       (1x1, C_in -> e C_in; skipped when e = 1)
    h = swish(BN(depthwise_k,s(h)))                 (k taps per channel, stride s)
    h = h * sigmoid(W_2 swish(W_1 mean_t h))        (squeeze-excitation, bottleneck C_in / 4)
    h = BN(W_project h)                             (1x1, e C_in -> C_out, linear: no activation)
    y = x + h  if s = 1 and C_in = C_out, else h

``swish(x) = x sigmoid(x)`` (SiLU).

Shapes:
    input float[B, C, T] (any T >= 1; the default strides downsample by 32) -> ``forward``: float[B, 256]
    (the pooled, projected embedding) and ``features``: float[B, head_channels, ceil(T / 32)].

Default size: 3,219,148 parameters for 4 input channels, 3,218,860 for 1 (the count is printed and checked by
``tests/models/test_efficientnet1d.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DEFAULT_STAGES", "EfficientNet1D", "MBConv1D", "SqueezeExcite1D"]

# (expansion, output channels, repeats, first stride, kernel) per stage; 16 blocks in all. The EfficientNet-B0
# table with the last two widths narrowed (192 -> 176, 320 -> 256) so that the 1-D network has ~3.2M parameters.
DEFAULT_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 176, 4, 2, 5),
    (6, 256, 1, 1, 3),
)


class SqueezeExcite1D(nn.Module):
    """Channel gating from the time-averaged activation: ``x * sigmoid(W_2 swish(W_1 mean_t x))``."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv1d(channels, squeeze_channels, 1)
        self.expand = nn.Conv1d(squeeze_channels, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=-1, keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv1D(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (see the module docstring for the maths).

    Args:
        in_channels, out_channels: widths.
        expansion: width multiplier of the hidden layer (1 skips the expansion convolution).
        kernel_size: depthwise kernel (odd; "same" padding).
        stride: depthwise stride.
        se_ratio: squeeze width as a fraction of ``in_channels`` (0.25 in EfficientNet).
        drop_path: probability of dropping the residual branch per sample in training (stochastic depth).
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int, kernel_size: int, stride: int,
                 se_ratio: float = 0.25, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv1d(in_channels, hidden, 1, bias=False), nn.BatchNorm1d(hidden), nn.SiLU()]
        layers += [
            nn.Conv1d(hidden, hidden, kernel_size, stride=stride, padding=kernel_size // 2, groups=hidden,
                      bias=False),
            nn.BatchNorm1d(hidden),
            nn.SiLU(),
            SqueezeExcite1D(hidden, max(1, int(in_channels * se_ratio))),
            nn.Conv1d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm1d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = float(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(x)
        if not self.residual:
            return h
        if self.training and self.drop_path > 0:
            keep = torch.rand(h.shape[0], 1, 1, device=h.device) >= self.drop_path
            h = h * keep.to(h.dtype) / (1.0 - self.drop_path)
        return x + h


class EfficientNet1D(nn.Module):
    """1-D EfficientNet encoder: stem, MBConv stages, head convolution, global average pool, linear embedding.

    Args:
        in_channels: input channels C (4 PPG channels in the paper; 1 for a single photodiode).
        embed_dim: output embedding width (256).
        stem_channels: width of the stride-2 stem convolution (32).
        stem_kernel: stem kernel size (3, as B0).
        stages: ``[(expansion, channels, repeats, stride, kernel), ...]``; default :data:`DEFAULT_STAGES` (16 blocks).
        head_channels: width of the 1x1 head convolution before pooling (384).
        se_ratio: squeeze-excitation bottleneck as a fraction of each block's input width.
        drop_path: stochastic-depth rate, growing linearly from 0 to this value over the blocks.

    The encoder contract of :mod:`models`: ``embed_dim``, ``in_channels``, ``config`` (set by ``models.create``),
    ``embed(x) -> float[B, embed_dim]`` and ``forward(x)`` returning the same embedding.

    >>> enc = EfficientNet1D(in_channels=1)
    >>> enc(torch.randn(2, 1, 640)).shape
    torch.Size([2, 256])
    """

    def __init__(self, in_channels: int = 4, embed_dim: int = 256, stem_channels: int = 32, stem_kernel: int = 3,
                 stages: Sequence[Sequence[int]] = DEFAULT_STAGES, head_channels: int = 384, se_ratio: float = 0.25,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("embed_dim", embed_dim), ("stem_channels", stem_channels),
                            ("head_channels", head_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"model.{name}: must be a positive integer, got {value!r}")
        stages = [tuple(int(v) for v in s) for s in stages]
        if not stages or any(len(s) != 5 or min(s) < 1 for s in stages):
            raise ValueError("model.stages: need [[expansion, channels, repeats, stride, kernel], ...] of positive ints")
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, stem_channels, stem_kernel, stride=2, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(stem_channels),
            nn.SiLU(),
        )
        n_blocks = sum(s[2] for s in stages)
        blocks: list[nn.Module] = []
        width = stem_channels
        for expansion, channels, repeats, stride, kernel in stages:
            for r in range(repeats):
                rate = drop_path * len(blocks) / max(1, n_blocks - 1)
                blocks.append(MBConv1D(width, channels, expansion, kernel, stride if r == 0 else 1, se_ratio, rate))
                width = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv1d(width, head_channels, 1, bias=False), nn.BatchNorm1d(head_channels),
                                  nn.SiLU())
        self.proj = nn.Linear(head_channels, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                # fan_in, not torchvision's fan_out: fan_out counts every output channel of a depthwise kernel, so
                # each block shrinks the signal ~30x and a freshly built encoder (the probes' random control, in
                # eval mode) would output ~1e-13.
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling, float[B, head_channels, T']."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input [B, {self.in_channels}, T], got {list(x.shape)}")
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=-1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 256-d embedding float[B, embed_dim] used by objectives and probes."""
        return self.forward(x)
