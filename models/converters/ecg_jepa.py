"""ECG-JEPA (Weimann & Conrad 2024, kweimann/ECG-JEPA) checkpoints -> our :class:`models.vit1d.ViT1D`.

Their ``pretrain.py`` saves ``{'model': JEPA.state_dict(), 'optimizer', 'config': asdict(Config), 'step'}`` and
their ``scripts/minify_pretrained_checkpoint.py`` keeps ``{'model': target-encoder weights, 'config'}`` (the form of
their published files). Like their ``finetune.py``, we keep the EMA target encoder (``target_encoder.*``).
Everything in them is plain tensors, dicts, lists and numbers, so nothing beyond ``weights_only`` is allowed.

The size is read from the weights (width, leads and patch length from the patch embedding, depth from the blocks,
MLP ratio, registers, biases, LayerScale) and checked against ``config``; heads and the LayerNorm epsilon, which
no weight shows, come from ``config``. Their layer names map onto ours one to one::

    patch_embed.proj.*  -> patch_embed.*          blocks.i.mlp.fc1.* -> blocks.i.mlp.0.*
    blocks.i.attn_ls.weight -> blocks.i.attn_scale  blocks.i.mlp.fc2.* -> blocks.i.mlp.2.*
    blocks.i.mlp_ls.weight  -> blocks.i.mlp_scale   (registers, norm*, attn.qkv, attn.proj: same names)

Their sin-cos positions are a non-persistent buffer for ``channel_size / patch_size`` tokens, computed in float32;
ours are computed for any length in float64, then cast (up to 1.4e-5 apart over 200 tokens of width 384), so the
converted encoder also reads windows longer than the one it was trained on. ``embed(x)`` (mean over tokens,
registers dropped) is their linear-evaluation feature without attentive pooling. The returned extra config records
what the encoder expects: rate, leads (their order), window and the preprocessing (per-lead z-score, clip at +-5).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.converters import ConversionError, register
from models.registry import create

PREFIX = "target_encoder."
_RENAME = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embed."),
    (re.compile(r"^(blocks\.\d+)\.mlp\.fc1\."), r"\1.mlp.0."),
    (re.compile(r"^(blocks\.\d+)\.mlp\.fc2\."), r"\1.mlp.2."),
    (re.compile(r"^(blocks\.\d+)\.attn_ls\.weight$"), r"\1.attn_scale"),
    (re.compile(r"^(blocks\.\d+)\.mlp_ls\.weight$"), r"\1.mlp_scale"),
)
_LEADS = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}  # their upper-case names -> ours


def _ours(name: str) -> str:
    for pattern, repl in _RENAME:
        name = pattern.sub(repl, name)
    return name


def _size(state: dict[str, torch.Tensor], config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ViT1D options of these weights; every one the weights show is checked against ``config``."""
    try:
        patch = state["patch_embed.proj.weight"]
        dim, in_channels, patch_size = (int(v) for v in patch.shape)
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise ConversionError(f"{path}: the target encoder lacks a ViT weight ({type(e).__name__}: {e})") from None
    shown = {
        "dim": dim, "num_channels": in_channels, "patch_size": patch_size, "depth": depth,
        "mlp_ratio": hidden / dim,
        "num_registers": int(state["registers"].shape[1]) if "registers" in state else 0,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "bias": "norm.bias" in state,
        "layer_scale": "blocks.0.attn_ls.weight" in state,
    }
    recorded = {
        "dim": config.get("dim"), "num_channels": len(config.get("channels") or ()),
        "patch_size": config.get("patch_size"), "depth": config.get("depth"),
        "mlp_ratio": None if config.get("mlp_ratio") is None else int(dim * float(config["mlp_ratio"])) / dim,
        "num_registers": config.get("num_registers"), "qkv_bias": config.get("qkv_bias"), "bias": config.get("bias"),
        "layer_scale": None if config.get("layer_scale_eps") is None else float(config["layer_scale_eps"]) > 0,
    }
    wrong = [f"{k} {recorded[k]} in config, {v} in the weights" for k, v in shown.items() if recorded[k] != v]
    if wrong:
        raise ConversionError(f"{path}: config and weights disagree: {'; '.join(wrong)}")
    heads = config.get("num_heads")
    if not isinstance(heads, int) or heads <= 0 or dim % heads:
        raise ConversionError(f"{path}: config num_heads {heads!r} does not divide the width {dim}")
    return dict(in_channels=in_channels, patch_size=patch_size, dim=dim, depth=depth, num_heads=heads,
                mlp_ratio=float(config["mlp_ratio"]), num_registers=shown["num_registers"], qkv_bias=shown["qkv_bias"],
                bias=shown["bias"], norm_eps=float(config.get("norm_eps", 1e-6)),
                layer_scale=float(config["layer_scale_eps"]) if shown["layer_scale"] else 0.0)


def _name(dim: int, depth: int, heads: int) -> str:
    """Our registry name of the paper's size this is, else the XS entry with every option overridden."""
    for name, size in (("vit1d_xs", (192, 8, 4)), ("vit1d_s", (384, 8, 6)), ("vit1d_b", (768, 12, 12))):
        if (dim, depth, heads) == size:
            return name
    return "vit1d_xs"


@register("ecg_jepa", "kweimann/ECG-JEPA pretrain.py checkpoints (chkpt_*.pt) or their minified form (*.min.pt); "
                      "keeps the target encoder")
def build(obj: Any, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict) or not isinstance(obj.get("config"), dict):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise ConversionError(f"{path}: not an ECG-JEPA checkpoint (expected a dict with 'model' and 'config' from "
                              f"their pretrain.py, got {keys or 'an empty dict'})")
    if "eval_config" in obj:
        raise ConversionError(f"{path}: an ECG-JEPA fine-tuned classifier (has 'eval_config'); convert the "
                              f"pretraining checkpoint it started from")
    state = {k[len(PREFIX):]: v for k, v in obj["model"].items() if isinstance(k, str) and k.startswith(PREFIX)}
    if not state:
        raise ConversionError(f"{path}: no target_encoder.* weights in 'model' (not an ECG-JEPA pretraining "
                              f"checkpoint)")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: the target encoder holds values that are not tensors")
    config = obj["config"]
    options = _size(state, config, path)
    model = create(_name(options["dim"], options["depth"], options["num_heads"]), **options)
    try:
        model.load_state_dict({_ours(k): v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise ConversionError(f"{path}: weights do not fit the ViT1D ({' '.join(str(e).split())[:200]})") from None
    fs = config.get("sampling_frequency")
    window = config.get("channel_size")
    leads = [_LEADS.get(str(c).upper(), str(c)) for c in config["channels"]]
    data = {"leads": leads, "clip": 5.0}
    if isinstance(fs, (int, float)) and fs > 0:
        data["fs"] = fs
        if isinstance(window, int) and window > 0:
            data["window_s"] = window / fs
    extra = {
        "modality": "ecg", "objective": "jepa", "data": data,
        "ecg_jepa": {"sampling_frequency": fs, "channels": list(config["channels"]), "channel_size": window,
                     "step": obj.get("step"), "normalisation": "per-lead (x - mean) / std of the corpus, clip +-5"},
    }
    return model, extra
