"""Sparse-voxel UNet on spconv (Pointcept's SpUNet layout, or MSM's with ``layout="msm"``).

The point <-> voxel helpers it shares with SECOND live in :mod:`models.sparse_voxels`, MSM's blocks in
:mod:`models.msm_blocks`; both are importable from here too.

Input is a Pointcept point dict ``{"grid_coord": int32[N, 3] (x, y, z) voxel coordinates >= 0,
"feat": float[N, F], "offset": int64[B] cumulative point counts}``. Points in the same voxel of the same scan
are averaged into one site; spconv receives contiguous int32 indices ``(batch, z, y, x)`` (spconv ignores
tensor strides, so a non-contiguous index tensor silently gives wrong sites: :func:`sparse_tensor` enforces it).

Architecture (``L`` levels, encoder channels ``c_0..c_{L-1}``, decoder channels ``d_0..d_{L-2}`` coarsest first)::

    stem    SubM k3 (F -> c_0) BN ReLU, enc_blocks x BasicBlock(c_0)                      stride 1
    down_l  SparseConv k2 s2 (c_{l-1} -> c_l) BN ReLU, enc_blocks x BasicBlock(c_l)       stride 2^l
    up_i    SparseInverseConv k2 (-> d_i) BN ReLU on the sites of encoder level t = L-2-i,
            skip fusion: Linear([up, skip_t] -> d_i) BN ReLU,
            decoder_hook(i, x)                      (may append sites: MSM mask tokens),
            dec_blocks x BasicBlock(d_i) with their own rulebooks ("dec{t}"),
            keep the first n rows (the sites that existed before the hook) for up_{i+1}.

``layout="msm"`` is the network of Masked Scene Modeling (Hermosilla, Stippel & Sick, CVPR 2025; their
``MSM3D_Encoder``, "transformer++" blocks), which ``models.converters.msm`` loads from their checkpoints::

    stem    Linear (F -> c_0) RMSNorm                                                     (no conv)
    down_l  SparseConv k2 s2 (+ bias) RMSNorm, enc_blocks x PreNormResBlock, enc_attn x SerializedAttentionBlock
    dec_0   RMSNorm on the coarsest level, dec_blocks x PreNormResBlock, dec_attn x SerializedAttentionBlock
    dec_i   RMSNorm, SparseInverseConv k2 (+ bias) -> d_i, GatedSkip: up * gamma + Linear(RMSNorm(skip_t)),
            decoder_hook(i, x), dec_blocks x PreNormResBlock, dec_attn x SerializedAttentionBlock    (i = 1..L-1)

so it has ``L`` decoder levels (the coarsest included; ``decoder_channels[0] == channels[-1]``), GELU instead of ReLU,
RMSNorm (eps added to the RMS) instead of BatchNorm, layer-scaled residuals, additive instead of concatenated skips,
and attention blocks. Equal to their encoder to float32 rounding (tests/models/test_convert_msm.py), with these
deliberate differences:

- attention runs in float32; theirs casts q, k, v and the output to float16 for flash-attn (up to 1.4e-4 on
  features of magnitude up to 4.4 in the golden test);
- no attention dropout in eval; theirs passes ``att_drop_prob`` (0.1) to flash-attn in eval too, so their
  inference is random;
- the blocks of a level serialise along their xyz, then yxz Z-order curve (the same bit layout as theirs); theirs
  draws the order of four curves (two z-order, two Hilbert) at random in every forward pass. Identical when a scan
  has at most ``attn_window // 2 + 1`` sites at an attention level (every site then sees its whole scan) or when
  their shuffle is off (tested with a 16-site window); other neighbourhoods otherwise.

Their conv biases sit in a ``ChannelBias`` after the conv (spconv's CPU kernels refuse a fused bias in eval).

BasicBlock: ``x + BN(SubM(ReLU(BN(SubM(x)))))`` then ReLU (He et al. 2016 on submanifold convs, Graham et al.
CVPR 2018). Strided k2 s2 convs make each fine site the child of exactly one coarse site
``floor(coord / 2)``, so point features can be gathered at any level without interpolation.

References: Graham, Engelcke, van der Maaten, "3D Semantic Segmentation with Submanifold Sparse Convolutional
Networks", CVPR 2018; Wu et al., Pointcept SpUNet; Yan et al., SECOND, Sensors 2018 (see models/second.py).
On CPU, ``models.spconv_cpu.apply_cpu_fixes`` is applied on import (nothing is patched when CUDA is available).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import spconv.pytorch as spconv
from models.msm_blocks import (ChannelBias, GatedSkip, PreNormResBlock, RMSNorm, SerializedAttentionBlock,
                               morton_order, windowed_attention)
from models.spconv_cpu import apply_cpu_fixes
from models.sparse_voxels import (batch_index, level_point_features, lookup_sites, sparse_tensor, voxel_keys,
                                  voxelize_points)

apply_cpu_fixes()

DecoderHook = Callable[[int, spconv.SparseConvTensor], spconv.SparseConvTensor]

_BN = dict(eps=1e-3, momentum=0.01)  # OpenPCDet's SECOND norm settings


class BasicBlock(spconv.SparseModule):
    """Residual block of two 3x3x3 submanifold convs: ``ReLU(x + BN(SubM(ReLU(BN(SubM(x))))))``."""

    def __init__(self, channels: int, indice_key: str, bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn1 = nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn2 = nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        h = self.conv1(x)
        h = h.replace_feature(F.relu(self.bn1(h.features)))
        h = self.conv2(h)
        return h.replace_feature(F.relu(self.bn2(h.features) + x.features))


def _conv_bn_relu(conv: nn.Module, channels: int, bn_momentum: float = 0.01) -> spconv.SparseSequential:
    return spconv.SparseSequential(conv, nn.BatchNorm1d(channels, eps=1e-3, momentum=bn_momentum), nn.ReLU())


def _as_tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(v),) * n if isinstance(v, int) else tuple(int(x) for x in v)


class SparseUNet(nn.Module):
    """Submanifold sparse-conv UNet over voxelised point clouds (see the module docstring for the layout).

    Args:
        in_channels: point feature width ``F``.
        channels: encoder channels per level, finest first (``L = len(channels)`` levels, strides 1..2^(L-1)).
        decoder_channels: decoder output channels per decoder level, coarsest first (``L - 1`` of them);
            default mirrors the encoder: ``channels[L-2], ..., channels[0]``.
        enc_blocks, dec_blocks: BasicBlocks per level (an int or one per level).
        bn_momentum: of every BatchNorm (0.1, PyTorch's default: running statistics settle within a few
            hundred steps, so short CPU runs evaluate in eval mode correctly; OpenPCDet uses 0.01).
        layout: ``"spunet"`` (the default above) or ``"msm"`` (MSM's network, module docstring); for ``"msm"``
            ``decoder_channels`` has ``L`` entries (default ``channels`` reversed) and ``dec_blocks`` is per level.
        enc_attn, dec_attn: SerializedAttentionBlocks per encoder / decoder level (``"msm"`` only; default 0).
        enc_heads, dec_heads: their attention heads; attn_window: sites a query sees along the curve (1024).

    Attributes:
        point_dim: channels of the finest decoder level (``point_feat`` width).
        embed_dim: width of :meth:`embed`, ``sum(level_channels)`` (every decoder level's mean, concatenated).
        level_channels: ``decoder_channels`` (coarsest first).

    Shapes:
        forward(points) -> ``{"levels": [SparseConvTensor] * (L-1) coarsest first, "point_feat": [N, point_dim],
        "point2voxel": int64[N], "num_sites": [n_i], "voxels": SparseConvTensor (stride-1 input)}``.
    """

    def __init__(self, in_channels: int = 4, channels: Sequence[int] = (32, 64, 128, 256, 384),
                 decoder_channels: Sequence[int] | None = None, enc_blocks: int | Sequence[int] = 2,
                 dec_blocks: int | Sequence[int] = 2, bn_momentum: float = 0.1, layout: str = "spunet",
                 enc_attn: int | Sequence[int] = 0, dec_attn: int | Sequence[int] = 0,
                 enc_heads: int | Sequence[int] = 1, dec_heads: int | Sequence[int] = 1,
                 attn_window: int = 1024) -> None:
        super().__init__()
        m = float(bn_momentum)
        if layout not in ("spunet", "msm"):
            raise ValueError(f"SparseUNet: layout must be 'spunet' or 'msm', got {layout!r}")
        self.layout = layout
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError("SparseUNet: channels needs at least 2 levels")
        n_levels = len(channels)
        n_dec = n_levels if layout == "msm" else n_levels - 1
        if decoder_channels is not None:
            dec = tuple(int(c) for c in decoder_channels)
        else:
            dec = channels[::-1] if layout == "msm" else channels[-2::-1]
        if len(dec) != n_dec:
            raise ValueError(f"SparseUNet: decoder_channels needs {n_dec} entries, got {len(dec)}")
        eb, db = _as_tuple(enc_blocks, n_levels), _as_tuple(dec_blocks, n_dec)
        ea, da = _as_tuple(enc_attn, n_levels), _as_tuple(dec_attn, n_dec)
        eh, dh = _as_tuple(enc_heads, n_levels), _as_tuple(dec_heads, n_dec)
        self.in_channels = int(in_channels)
        self.channels = channels
        self.level_channels: tuple[int, ...] = dec
        self.point_dim: int = dec[-1]
        self.embed_dim: int = int(sum(dec))
        self.strides: tuple[int, ...] = tuple(2 ** (n_dec - 1 - i) for i in range(n_dec))
        if layout == "msm":
            self._build_msm(channels, dec, eb, db, ea, da, eh, dh, int(attn_window))
            return
        if any(ea) or any(da):
            raise ValueError("SparseUNet: attention blocks (enc_attn, dec_attn) need layout='msm'")

        self.stem = _conv_bn_relu(spconv.SubMConv3d(in_channels, channels[0], 3, padding=1, bias=False,
                                                    indice_key="subm0"), channels[0], m)
        self.enc = nn.ModuleList()
        for lvl in range(n_levels):
            layers: list[nn.Module] = []
            if lvl > 0:
                layers.append(_conv_bn_relu(spconv.SparseConv3d(channels[lvl - 1], channels[lvl], 2, stride=2,
                                                                bias=False, indice_key=f"down{lvl}"), channels[lvl], m))
            layers += [BasicBlock(channels[lvl], f"subm{lvl}", m) for _ in range(eb[lvl])]
            self.enc.append(spconv.SparseSequential(*layers))
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.dec = nn.ModuleList()
        prev = channels[-1]
        for i, d in enumerate(dec):
            t = n_levels - 2 - i
            self.up.append(_conv_bn_relu(spconv.SparseInverseConv3d(prev, d, 2, bias=False,
                                                                    indice_key=f"down{t + 1}"), d, m))
            self.fuse.append(nn.Sequential(nn.Linear(d + channels[t], d, bias=False),
                                           nn.BatchNorm1d(d, eps=1e-3, momentum=m), nn.ReLU()))
            self.dec.append(spconv.SparseSequential(*[BasicBlock(d, f"dec{t}", m) for _ in range(db[i])]))
            prev = d

    def _build_msm(self, channels: tuple[int, ...], dec: tuple[int, ...], eb: tuple[int, ...], db: tuple[int, ...],
                   ea: tuple[int, ...], da: tuple[int, ...], eh: tuple[int, ...], dh: tuple[int, ...],
                   window: int) -> None:
        """MSM's hierarchical UNet (Hermosilla et al., CVPR 2025): RMSNorm, GELU, layer-scaled pre-norm residual
        blocks, biased k2 s2 down / inverse-up convs, serialised attention blocks, gated additive skips and a
        decoder level at every encoder level (the coarsest included)."""
        n_levels = len(channels)
        if dec[0] != channels[-1]:
            raise ValueError(f"SparseUNet(layout='msm'): decoder_channels[0] must equal channels[-1] "
                             f"({channels[-1]}), got {dec[0]}")

        def attn(c: int, heads: int, n: int) -> list[nn.Module]:  # MSM cycles curves between the blocks
            return [SerializedAttentionBlock(c, heads, window, (3, 2, 1) if k % 2 == 0 else (2, 3, 1))
                    for k in range(n)]

        self.stem = nn.Sequential(nn.Linear(self.in_channels, channels[0]), RMSNorm(channels[0]))
        self.enc = nn.ModuleList()
        for lvl in range(n_levels):
            layers: list[nn.Module] = []
            if lvl > 0:
                layers.append(spconv.SparseSequential(
                    spconv.SparseConv3d(channels[lvl - 1], channels[lvl], 2, stride=2, bias=False,
                                        indice_key=f"down{lvl}"), ChannelBias(channels[lvl]), RMSNorm(channels[lvl])))
            layers += [PreNormResBlock(channels[lvl], f"subm{lvl}") for _ in range(eb[lvl])]
            layers += attn(channels[lvl], eh[lvl], ea[lvl])
            self.enc.append(spconv.SparseSequential(*layers))
        self.dec_norm = RMSNorm(dec[0])
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i, d in enumerate(dec):
            t = n_levels - 1 - i
            if i > 0:
                self.up.append(spconv.SparseSequential(RMSNorm(dec[i - 1]), spconv.SparseInverseConv3d(
                    dec[i - 1], d, 2, bias=False, indice_key=f"down{t + 1}"), ChannelBias(d)))
                self.fuse.append(GatedSkip(channels[t], d))
            self.dec.append(spconv.SparseSequential(*[PreNormResBlock(d, f"dec{t}") for _ in range(db[i])],
                                                    *attn(d, dh[i], da[i])))

    def forward(self, points: dict, decoder_hook: DecoderHook | None = None) -> dict:
        """Encode ``points``; ``decoder_hook(i, x)`` runs at decoder level ``i`` after skip fusion (may append rows)."""
        x, point2voxel = voxelize_points(points, min_shape=2 ** (len(self.channels) - 1))
        voxels = x
        msm = self.layout == "msm"
        x = x.replace_feature(self.stem(x.features)) if msm else self.stem(x)
        skips = []
        for lvl, stage in enumerate(self.enc):
            x = stage(x)
            skips.append(x)
        levels, num_sites = [], []
        n_levels = len(self.channels)
        if msm:
            x = x.replace_feature(self.dec_norm(x.features))
        for i in range(len(self.level_channels)):
            t = n_levels - 1 - i if msm else n_levels - 2 - i
            skip = skips[t]
            if msm and i > 0:
                x = self.up[i - 1](x)
                x = x.replace_feature(self.fuse[i - 1](x.features, skip.features))
            elif not msm:
                x = self.up[i](x)
                x = x.replace_feature(self.fuse[i](torch.cat([x.features, skip.features], 1)))
            n = x.features.shape[0]
            if decoder_hook is not None:
                x = decoder_hook(i, x)
                if x.features.shape[0] < n:
                    raise ValueError(f"decoder_hook removed sites at level {i}: it may only append rows")
                x = sparse_tensor(x.features, x.indices, skip.spatial_shape, skip.batch_size, skip.indice_dict)
            x = self.dec[i](x)
            levels.append(x)
            num_sites.append(n)
            if x.features.shape[0] != n:  # drop appended sites: the next inverse conv's rulebook knows n rows
                x = sparse_tensor(x.features[:n], x.indices[:n], x.spatial_shape, x.batch_size, x.indice_dict)
        point_feat = levels[-1].features[:num_sites[-1]][point2voxel]
        return {"levels": levels, "point_feat": point_feat, "point2voxel": point2voxel, "num_sites": num_sites,
                "voxels": voxels}

    def point_features(self, points: dict, levels: str = "all") -> torch.Tensor:
        """Per-point features [N, D]: ``"last"`` the finest decoder level (D = point_dim); ``"all"`` every decoder
        level's feature of the voxel containing the point at that level (nearest parent, no trilinear
        interpolation), concatenated coarsest first (D = sum(level_channels))."""
        if levels not in ("all", "last"):
            raise ValueError(f"point_features: levels must be 'all' or 'last', got {levels!r}")
        out = self(points)
        if levels == "last":
            return out["point_feat"]
        vox = out["voxels"].indices
        feats = [level_point_features(vox, out["point2voxel"], lv, n, s)
                 for lv, n, s in zip(out["levels"], out["num_sites"], self.strides)]
        return torch.cat(feats, 1)

    def embed(self, points: dict) -> torch.Tensor:
        """Per-scan embedding [B, sum(level_channels)]: mean over each decoder level's sites, concatenated."""
        return pool_levels(self(points), int(points["offset"].numel()))


def pool_levels(out: dict, batch_size: int) -> torch.Tensor:
    """Per-scan mean over the (original, pre-hook) sites of every decoder level of a :class:`SparseUNet` output,
    concatenated: [B, sum(level channels)]."""
    pooled = []
    for lv, n in zip(out["levels"], out["num_sites"]):
        b = lv.indices[:n, 0].long()
        s = lv.features.new_zeros(batch_size, lv.features.shape[1]).index_add_(0, b, lv.features[:n])
        c = torch.bincount(b, minlength=batch_size).clamp_min(1).to(s.dtype)
        pooled.append(s / c[:, None])
    return torch.cat(pooled, 1)


__all__ = ["BasicBlock", "ChannelBias", "GatedSkip", "PreNormResBlock", "RMSNorm", "SerializedAttentionBlock",
           "SparseUNet", "batch_index", "level_point_features", "lookup_sites", "morton_order", "pool_levels",
           "sparse_tensor", "voxelize_points", "voxel_keys", "windowed_attention"]
