"""Masked Scene Modeling (Hermosilla et al., CVPR 2025; github.com/phermosilla/msm) checkpoints -> our SparseUNet.

Their file (what ``MSM3D_EncDec.load_paramteres`` reads): a dict with the weights under ``"state_dict"`` (or
``"model"``); the encoder is the DDP-wrapped student, keys ``module.student.<name>`` of their ``MSM3D_Encoder``
("transformer++" blocks: RMSNorm without offset, bias-free SubM convs and attention, GLU MLP). Other entries (epoch,
optimiser, teacher, ...) are ignored. Sizes are read from the weights: channels per level, ResNet and attention
blocks per encoder / decoder level. Not recorded in a checkpoint and taken from the published ``model_cfg.py``:
attention heads of 8 channels each (``num_heads = channels / 8`` at every attention level there) and windows of 1024
sites.

Mapping (theirs -> ``SparseUNet(layout="msm")``): ``init_transform`` -> ``stem``; ``down.{s-1}`` -> ``enc.{s}.0``
(conv weight, bias -> ``ChannelBias``, norm); ``resnet_enc.{s}.{i}`` then ``att_enc.{s}.{j}`` (their ``j = 0`` is
the parameter-free curve sorter) -> the following entries of ``enc.{s}``; ``decoder_init_norm`` -> ``dec_norm``;
``up.{i}`` -> ``up.{i}``; ``linears_skip.{i}`` + ``skip.{i}.gamma`` -> ``fuse.{i}`` (``GatedSkip``);
``resnet_dec.{i}`` / ``att_dec.{i}`` -> ``dec.{i}``. Layer scales ``[1, C]`` become ``[C]``.

Sparse-conv kernels: both use spconv 2.x (weights ``[C_out, k0, k1, k2, C_in]``, axis ``k_a`` along index column
``a + 1``), but their sites are ``(batch, x, y, z)`` and ours ``(batch, z, y, x)``, so a kernel's spatial axes are
reversed: ``ours = theirs.permute(0, 3, 2, 1, 4)`` (tests/models/test_convert_msm.py proves it on a conv and on the
whole network).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from models.converters import ConversionError, register
from models.registry import create

PREFIX = "module.student."
HEAD_CHANNELS = 8
WINDOW = 1024

_RESNET = {"norm.norm.scale": "norm.scale", "conv1.weight": "conv1.weight", "conv2.weight": "conv2.weight",
           "norm_post_layer.norm.scale": "norm_post.scale", "skip_path.gamma": "gamma"}
_ATTN = {"norm.norm.scale": "norm.scale", "linear_in.weight": "qkv.weight", "linear_out.weight": "proj.weight",
         "skip_path_1.gamma": "gamma1", "mlp_norm.norm.scale": "mlp_norm.scale", "mlp_lin_1.weight": "fc1.weight",
         "mlp_lin_2.weight": "fc2.weight", "skip_path_2.gamma": "gamma2"}


def kernel_to_ours(w: torch.Tensor) -> torch.Tensor:
    """spconv kernel over (x, y, z) sites -> the same kernel over our (z, y, x) sites."""
    return w.permute(0, 3, 2, 1, 4).contiguous()


def _count(state: dict[str, torch.Tensor], group: str) -> dict[int, int]:
    """{level: number of blocks} of ``group.{level}.{block}.*`` keys."""
    blocks: dict[int, set[int]] = {}
    for k in state:
        m = re.match(rf"{group}\.(\d+)\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return {lvl: len(b) for lvl, b in blocks.items()}


def student_weights(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: not an MSM checkpoint (expected a dict with 'state_dict', got "
                              f"{type(obj).__name__})")
    state = obj.get("state_dict", obj.get("model"))
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: not an MSM checkpoint (no 'state_dict' or 'model' entry)")
    student = {k[len(PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if "init_transform.0.weight" not in student:
        raise ConversionError(f"{path}: not an MSM checkpoint (no '{PREFIX}init_transform.0.weight' in its state "
                              "dict)")
    if not all(isinstance(v, torch.Tensor) for v in student.values()):
        raise ConversionError(f"{path}: MSM student entries that are not tensors")
    odd = sorted(k for k in student if k.endswith((".offset", ".norm.weight", ".norm.bias", "conv1.bias",
                                                   "linear_in.bias")) or k.startswith("final_stem"))
    if odd:
        raise ConversionError(f"{path}: only MSM's published 'transformer++' encoder without output stem is "
                              f"supported (found {odd[0]})")
    return student


@register("msm", "Masked Scene Modeling (phermosilla/msm) checkpoint: 'state_dict' with module.student.* weights")
def build(obj: Any, path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    sd = student_weights(obj, path)
    n_levels = 1 + len({int(m.group(1)) for k in sd if (m := re.match(r"down\.(\d+)\.", k))})
    n_dec = 1 + len({int(m.group(1)) for k in sd if (m := re.match(r"up\.(\d+)\.", k))})
    try:
        channels = [int(sd["init_transform.0.weight"].shape[0])] + \
            [int(sd[f"down.{s}.0.weight"].shape[0]) for s in range(n_levels - 1)]
        dec = [int(sd["decoder_init_norm.norm.scale"].shape[0])] + \
            [int(sd[f"up.{i}.1.weight"].shape[0]) for i in range(n_dec - 1)]
    except KeyError as e:
        raise ConversionError(f"{path}: MSM checkpoint without {PREFIX}{e.args[0]}") from None
    res_e, att_e = _count(sd, "resnet_enc"), _count(sd, "att_enc")
    res_d, att_d = _count(sd, "resnet_dec"), _count(sd, "att_dec")
    cfg = dict(in_channels=int(sd["init_transform.0.weight"].shape[1]), channels=channels, decoder_channels=dec,
               layout="msm", enc_blocks=[res_e.get(s, 0) for s in range(n_levels)],
               dec_blocks=[res_d.get(i, 0) for i in range(n_dec)],
               enc_attn=[att_e.get(s, 0) for s in range(n_levels)], dec_attn=[att_d.get(i, 0) for i in range(n_dec)],
               enc_heads=[max(c // HEAD_CHANNELS, 1) for c in channels],
               dec_heads=[max(c // HEAD_CHANNELS, 1) for c in dec], attn_window=WINDOW)
    try:
        model = create("sparse_unet", **cfg)
    except ValueError as e:
        raise ConversionError(f"{path}: MSM sizes our SparseUNet cannot build ({e})") from None

    ours: dict[str, torch.Tensor] = {}

    def put(name: str, value: torch.Tensor) -> None:
        ours[name] = value.reshape(-1) if name.rsplit(".", 1)[-1].startswith("gamma") else value

    used: set[str] = set()

    def take(theirs: str) -> torch.Tensor:
        if theirs not in sd:
            raise ConversionError(f"{path}: MSM checkpoint without {PREFIX}{theirs}")
        used.add(theirs)
        return sd[theirs]

    def blocks(ours_prefix: str, first: int, res_group: str, att_group: str, lvl: int, n_res: int,
               n_att: int) -> None:
        for i in range(n_res):
            for a, b in _RESNET.items():
                v = take(f"{res_group}.{lvl}.{i}.{a}")
                put(f"{ours_prefix}.{first + i}.{b}", kernel_to_ours(v) if "conv" in a else v)
        for j in range(n_att):
            for a, b in _ATTN.items():
                put(f"{ours_prefix}.{first + n_res + j}.{b}", take(f"{att_group}.{lvl}.{j + 1}.{a}"))

    put("stem.0.weight", take("init_transform.0.weight"))
    put("stem.0.bias", take("init_transform.0.bias"))
    put("stem.1.scale", take("init_transform.1.norm.scale"))
    for s in range(n_levels):
        first = 0
        if s > 0:
            put(f"enc.{s}.0.0.weight", kernel_to_ours(take(f"down.{s - 1}.0.weight")))
            put(f"enc.{s}.0.1.bias", take(f"down.{s - 1}.0.bias"))
            put(f"enc.{s}.0.2.scale", take(f"down.{s - 1}.1.norm.scale"))
            first = 1
        blocks(f"enc.{s}", first, "resnet_enc", "att_enc", s, cfg["enc_blocks"][s], cfg["enc_attn"][s])
    put("dec_norm.scale", take("decoder_init_norm.norm.scale"))
    for i in range(n_dec):
        if i > 0:
            put(f"up.{i - 1}.0.scale", take(f"up.{i - 1}.0.norm.scale"))
            put(f"up.{i - 1}.1.weight", kernel_to_ours(take(f"up.{i - 1}.1.weight")))
            put(f"up.{i - 1}.2.bias", take(f"up.{i - 1}.1.bias"))
            put(f"fuse.{i - 1}.norm.scale", take(f"linears_skip.{i - 1}.0.norm.scale"))
            put(f"fuse.{i - 1}.linear.weight", take(f"linears_skip.{i - 1}.1.weight"))
            put(f"fuse.{i - 1}.linear.bias", take(f"linears_skip.{i - 1}.1.bias"))
            put(f"fuse.{i - 1}.gamma", take(f"skip.{i - 1}.gamma"))
        blocks(f"dec.{i}", 0, "resnet_dec", "att_dec", i, cfg["dec_blocks"][i], cfg["dec_attn"][i])
    left = sorted(set(sd) - used)
    if left:
        raise ConversionError(f"{path}: MSM student weights this converter does not map: {left[0]}"
                              f"{f' (+{len(left) - 1} more)' if len(left) > 1 else ''}")
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as e:
        raise ConversionError(f"{path}: MSM weights do not fit our SparseUNet "
                              f"({' '.join(str(e).split()[7:])[:200]})") from None
    return model, {"feature_order": "colour / 127.5 - 1 (3), normal (3)", "grid_size_m": 0.02}
