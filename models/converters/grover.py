"""GROVER checkpoints (tencent-ailab/grover) -> our :class:`models.grover.GTransEncoder`.

Their files are ``torch.save`` dicts ``{'args': argparse.Namespace, 'state_dict': ..., 'data_scaler': ...,
'features_scaler': ...}`` (``grover.util.utils.save_checkpoint``; the trainer's own saves add ``optimizer``,
``scheduler_step`` and ``epoch``). The state dict is a ``GroverTask`` (pretraining), ``GroverFinetuneTask`` or
``GroverFpGeneration``; only its encoder (keys under ``...encoders.``) is converted, the task heads are left out.

Sizes come from the weights: ``hidden`` (``W_o`` rows), ``heads`` (``heads.i`` modules), ``blocks``
(``node_blocks.i``), the atom / bond feature widths (the first blocks' ``W_i``); ``args`` gives what the weights do
not hold (``depth``, ``dropout``, ``activation``) and is checked against them. Their MPN runs ``depth - 1`` hops, so
our ``depth = args.depth - 1``.

The encoder is built with ``attention="reference"`` and ``padding_row=True``, which compute exactly what their
``GTransEncoder`` does (see :class:`models.grover.GTransEncoder`): attention over each token's own heads (not over
atoms, their defect, issues 17/18) and the zero-padding atom / bond that their neighbour sums add ``max_degree -
degree`` times. Our default encoder attends over the atoms of each molecule and has no padding row.

Weight names (theirs -> ours, per block ``i`` of ``node_blocks`` / ``edge_blocks``):

=============================================  ==============================================================
``W_i``, ``act_func``, ``layernorm``           ``proj.0``, ``proj.1``, ``proj.2`` (first block only)
``heads.h.mpn_{q,k,v}.W_h.weight``             ``mpn.weight[s]`` transposed, ``s = h``, ``H + h``, ``2H + h``
``heads.h.mpn_{q,k,v}.act_func.weight``        ``mpn.slope[s]``
``attn.linear_layers.{0,1,2}``                 ``w_q``, ``w_k``, ``w_v``
``attn.output_linear``, ``W_o``                ``w_out``, ``w_o``
``sublayer.norm``                              ``norm``
``ffn_<branch>.W_1 / act_func / W_2``          ``ffn.<branch>.net.0 / net.1 / net.3``
``<branch>_sublayer.norm``                     ``branch_norm.<branch>``
=============================================  ==============================================================

``act_func_node`` / ``act_func_edge`` are unused in their forward pass and dropped. ``activation = "ReLU"`` or
``"LeakyReLU"`` checkpoints (no slopes stored) get PReLU slopes fixed at 0 / 0.1: the same function (further
fine-tuning then trains those slopes). ``bias``, ``undirected`` and ``dense`` variants are refused.

**Features.** Their atom features equal ours (``modalities.molecules.featurize``) except the formal-charge one-hot
(columns 108-113): they index it with the charge itself (Python's negative indexing: 0, +1, +2, +-3, -2, -1 in slots
0..5), we by the listed charges (-1, -2, +1, +2, 0, other). Every weight that reads raw atom features (the first
blocks' ``W_i``, the branch FFNs' ``W_1``) has those columns permuted (:data:`CHARGE_SLOTS`), so our features give
their outputs exactly for charges -3..+3; charges of magnitude 4 and more land in different slots (theirs collide
with -2 / -1).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.converters import ConversionError, register
from models.registry import create

BRANCHES = ("atom_from_atom", "atom_from_bond", "bond_from_atom", "bond_from_bond")
CHARGE_START = 108  # after atomic number (101) and degree (7) one-hots, in both layouts
CHARGE_SLOTS = (4, 2, 3, 5, 1, 0)  # their slot j (charge 0, +1, +2, +-3, -2, -1) -> our slot
FIXED_SLOPES = {"PReLU": None, "ReLU": 0.0, "LeakyReLU": 0.1}


def charge_columns(atom_dim: int) -> Tensor:
    """int64[atom_dim]: ``ours[:, perm] = theirs`` for atom feature columns (identity outside the charge block)."""
    perm = torch.arange(atom_dim)
    for j, k in enumerate(CHARGE_SLOTS):
        perm[CHARGE_START + j] = CHARGE_START + k
    return perm


def reference_to_ours(x: Tensor) -> Tensor:
    """Their atom feature rows ``float[n, >=151]`` in our column order (the first 151 columns are atom features)."""
    out = x.clone()
    perm = charge_columns(151)
    out[:, perm] = x[:, :151]
    return out


def _encoder_weights(state: dict[str, Any], path: Path) -> dict[str, Tensor]:
    found = {}
    for key, value in state.items():
        m = re.match(r"^(?:.*\.)?encoders\.(.+)$", str(key))
        if m:
            found[m.group(1)] = value
    if not found:
        raise ConversionError(f"{path}: no GROVER encoder weights in its state_dict (no '...encoders.' keys)")
    return found


def _count(w: dict[str, Tensor], pattern: str) -> int:
    return len({int(m.group(1)) for k in w if (m := re.match(pattern, k))})


def _arg(args: Any, name: str, default: Any = None) -> Any:
    return getattr(args, name, default) if args is not None else default


@register("grover", "tencent-ailab/grover checkpoints ({'args', 'state_dict', ...}: pretraining, fine-tuning or "
          "fingerprint models)", allow=(argparse.Namespace,))
def build(obj: Any, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        keys = f" with keys {', '.join(map(str, obj))[:80]}" if isinstance(obj, dict) else ""
        raise ConversionError(f"{path}: not a GROVER checkpoint (expected a dict with 'args' and 'state_dict', got "
                              f"{type(obj).__name__}{keys})")
    args = obj.get("args")
    if not isinstance(args, argparse.Namespace):
        raise ConversionError(f"{path}: its 'args' is {type(args).__name__}, not the argparse.Namespace GROVER saves "
                              f"(depth and activation are read from it)")
    w = _encoder_weights(obj["state_dict"], path)
    if not all(isinstance(v, Tensor) for v in w.values()):
        raise ConversionError(f"{path}: encoder state_dict entries are not all tensors")
    backbone = _arg(args, "backbone", "gtrans")
    if backbone not in ("gtrans", "dualtrans"):
        raise ConversionError(f"{path}: args.backbone is {backbone!r}; only GROVER's GTransEncoder ('gtrans') converts")
    for flag in ("bias", "undirected", "dense"):
        if _arg(args, flag, False):
            raise ConversionError(f"{path}: args.{flag} is set; our GTransEncoder has no {flag} variant")
    activation = _arg(args, "activation", "PReLU")
    if activation not in FIXED_SLOPES:
        raise ConversionError(f"{path}: args.activation {activation!r} is not convertible "
                              f"(PReLU, ReLU or LeakyReLU)")
    try:
        hidden = int(w["node_blocks.0.W_o.weight"].shape[0])
        heads = _count(w, r"^node_blocks\.0\.heads\.(\d+)\.")
        blocks = _count(w, r"^node_blocks\.(\d+)\.")
        atom_dim = int(w["node_blocks.0.W_i.weight"].shape[1])
        bond_dim = int(w["edge_blocks.0.W_i.weight"].shape[1]) - atom_dim
    except KeyError as e:
        raise ConversionError(f"{path}: encoder weight {e.args[0]!r} missing") from None
    for name, mine in (("hidden_size", hidden), ("num_attn_head", heads), ("num_mt_block", blocks)):
        theirs = _arg(args, name)
        if theirs is not None and int(theirs) != mine:
            raise ConversionError(f"{path}: args.{name} is {theirs} but the weights have {mine}")
    depth = _arg(args, "depth")
    if not isinstance(depth, int) or depth < 1:
        raise ConversionError(f"{path}: args.depth is {depth!r}; expected an integer >= 1")
    if atom_dim != 151 or bond_dim != 14:
        raise ConversionError(f"{path}: features of width {atom_dim} (atoms) / {bond_dim} (bonds); GROVER's are "
                              f"151 / 14")
    dropout = float(_arg(args, "dropout", 0.0) or 0.0)

    try:
        model = create("grover_base", hidden=hidden, heads=heads, depth=depth - 1, blocks=blocks,
                       atom_dim=atom_dim, bond_dim=bond_dim, dropout=dropout, attention="reference",
                       padding_row=True)
    except ValueError as e:
        raise ConversionError(f"{path}: {e}") from None
    try:
        ours = _map_weights(w, heads, blocks, activation, atom_dim)
    except KeyError as e:
        raise ConversionError(f"{path}: encoder weight {e.args[0]!r} missing") from None
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as e:
        raise ConversionError(f"{path}: weights do not fit GTransEncoder ({' '.join(str(e).split())[:200]})") \
            from None
    extra = {"reference": {k: _arg(args, k) for k in ("hidden_size", "num_attn_head", "num_mt_block", "depth",
                                                       "dropout", "activation", "embedding_output_type")},
             "features": "modalities.molecules.featurize (formal-charge columns permuted from the reference's)"}
    return model, extra


def _map_weights(w: dict[str, Tensor], heads: int, blocks: int, activation: str,
                 atom_dim: int) -> dict[str, Tensor]:
    fixed = FIXED_SLOPES[activation]

    def slope(key: str) -> Tensor:
        if fixed is None:
            return w[key].reshape(1).float()
        return torch.full((1,), fixed)

    perm = charge_columns(atom_dim)

    def atoms_first(weight: Tensor) -> Tensor:  # columns [atom features, ...] -> our atom feature order
        out = weight.clone()
        out[:, perm] = weight[:, :atom_dim]
        return out

    ours: dict[str, Tensor] = {}
    for view in ("node_blocks", "edge_blocks"):
        for i in range(blocks):
            t, o = f"{view}.{i}.", f"{view}.{i}."
            if i == 0:
                ours[o + "proj.0.weight"] = atoms_first(w[t + "W_i.weight"])
                ours[o + "proj.1.weight"] = slope(t + "act_func.weight")
                ours[o + "proj.2.weight"] = w[t + "layernorm.weight"]
                ours[o + "proj.2.bias"] = w[t + "layernorm.bias"]
            streams = [f"{t}heads.{h}.mpn_{x}." for x in "qkv" for h in range(heads)]
            ours[o + "mpn.weight"] = torch.stack([w[s + "W_h.weight"].t() for s in streams])
            ours[o + "mpn.slope"] = torch.cat([slope(s + "act_func.weight") for s in streams])
            for j, name in enumerate(("w_q", "w_k", "w_v")):
                ours[o + f"{name}.weight"] = w[t + f"attn.linear_layers.{j}.weight"]
                ours[o + f"{name}.bias"] = w[t + f"attn.linear_layers.{j}.bias"]
            ours[o + "w_out.weight"] = w[t + "attn.output_linear.weight"]
            ours[o + "w_o.weight"] = w[t + "W_o.weight"]
            ours[o + "norm.weight"] = w[t + "sublayer.norm.weight"]
            ours[o + "norm.bias"] = w[t + "sublayer.norm.bias"]
    for b in BRANCHES:
        ours[f"ffn.{b}.net.0.weight"] = atoms_first(w[f"ffn_{b}.W_1.weight"])
        ours[f"ffn.{b}.net.0.bias"] = w[f"ffn_{b}.W_1.bias"]
        ours[f"ffn.{b}.net.1.weight"] = slope(f"ffn_{b}.act_func.weight")
        ours[f"ffn.{b}.net.3.weight"] = w[f"ffn_{b}.W_2.weight"]
        ours[f"ffn.{b}.net.3.bias"] = w[f"ffn_{b}.W_2.bias"]
        ours[f"branch_norm.{b}.weight"] = w[f"{b}_sublayer.norm.weight"]
        ours[f"branch_norm.{b}.bias"] = w[f"{b}_sublayer.norm.bias"]
    return {k: v.float() for k, v in ours.items()}
