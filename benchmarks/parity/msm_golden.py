"""Golden outputs of the MSM authors' encoder, for tests/golden/msm_small.pth + tests/golden/msm_small.npz (parity
test: tests/models/test_convert_msm.py).

Given the authors' checkout (``--reference PATH``, the ``inference`` folder of github.com/phermosilla/msm holding
``model/`` and ``utils/``; not shipped here), this builds their ``MSM3D_Encoder`` (the "transformer++" variant of the
published ``model_cfg.py``) at a small non-default size, gives every parameter random values (norm scales, layer
scales and biases too, so that a wrong mapping cannot hide behind their initial ones), and writes

- ``msm_small.pth``: a checkpoint in the format their loader reads (``MSM3D_EncDec.load_paramteres``): a dict with
  ``"state_dict"`` holding the encoder's weights under the ``module.student.`` prefix (their DDP-wrapped student);
- ``msm_small.npz``: two scans of a small synthetic room corner (floor, two walls, a box; 2 cm grid, one point per
  voxel, colour + normal features as their ``Collect(feat_keys=("color", "normal"))`` orders them) and their
  encoder's output at every decoder level (``out_feats`` of ``forward``): sites ``(batch, x, y, z)`` and features.

Their code runs here on the CPU build of spconv 2.3.8 (they pin spconv-cu117 2.3.6; same library and weight layout)
with ``models.spconv_cpu.apply_cpu_fixes()`` and one thread. Patched in memory, never in their files:

- spconv's CPU ``ops.indice_conv`` asserts on a fused bias ("cpu don't support act and bias"), which eval-mode
  biased convs (their down / up convs) pass; the wrapper adds the bias after the convolution instead.

- ``flash_attn`` (a CUDA-only extension) is replaced by a dense implementation of
  ``flash_attn_varlen_qkvpacked_func`` written here from flash-attn's documented semantics: per sequence of
  ``cu_seqlens``, softmax(q k^T / sqrt(D)) v over keys ``j`` with ``i - left <= j <= i + right``. Its ``dropout_p``
  is ignored: their ``ResFormer`` passes ``att_drop_prob`` (0.1 in the published config) even in eval mode, and
  flash-attn applies it whenever it is > 0, so their own inference is stochastic; we record the deterministic
  (dropout-free) output, which is what our encoder computes.
- their attention casts q, k, v to float16 (a flash-attn requirement) and the output back. The golden features are
  recorded with that cast disabled (the ``torch`` their ``layers.py`` sees is a proxy whose ``float16`` is
  ``float32``), i.e. the float32 semantics of their network; the effect of the cast is measured (a second pass
  with it) and stored as ``fp16_effect``.

Their attention orders sites along four space-filling curves chosen in a random order at every forward
(``shuffle_sfc=True``, also in eval). With the scene used here every scan has at most ``window // 2 + 1`` sites at
every attention level, so every site attends to all sites of its scan and the order cannot change the result (the
generator asserts this). A second pass covers windowing: their curve shuffle switched off (so, with at most two
attention blocks per level as in the published model, a level's blocks use their xyz then yxz z-order curves) and a
window of 16 sites; its features are stored as ``level{l}_windowed_features``. Their Hilbert curves (third and
fourth blocks of a level, or any block when shuffled) are not covered.

``--check-published`` instead builds their encoder at the published size (``model_cfg.py``: 5 levels 32..384,
attention at the two coarsest levels of encoder and decoder), randomises it, saves it in the same format to a
temporary folder, converts it with ``models.converters.convert("msm", ...)`` and prints the largest feature
difference per decoder level (nothing is written).

    python benchmarks/parity/msm_golden.py --reference /path/to/msm/inference
"""

from __future__ import annotations

import argparse
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# Non-default sizes (the published model: channels 32..384, 5 levels, 2 ResNet blocks everywhere). Heads keep the
# published head width of 8 channels, which the converter relies on (a checkpoint does not record head counts).
SMALL = dict(
    in_channels=6, out_channels=0, drop_path=0.2, att_drop_prob=0.1,
    att_space_filling_curves=["xyz_z-order", "yxz_z-order", "xyz_hilbert", "yxz_hilbert"], shuffle_sfc=True,
    att_block_type="transformer++",
    channels=(8, 8, 16, 16), resnet_layers=(1, 2, 0, 0), att_layers=(0, 0, 2, 1), num_heads=(1, 1, 2, 2),
    window_sizes=(1024, 1024, 1024, 1024),
    dec_channels=(16, 16, 8, 8), dec_resnet_layers=(1, 0, 1, 1), dec_att_layers=(1, 1, 0, 0),
    dec_num_heads=(2, 2, 1, 1), dec_window_sizes=(1024, 1024, 1024, 1024),
)

WINDOWED = 16  # the window of the second, windowed pass (their window_size=(8, 8) in flash-attn)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None,  # noqa: ANN001
                                     causal=False, window_size=(-1, -1), **_):
    """Dense stand-in for flash-attn's varlen packed attention (``qkv`` [T, 3, H, D]); dropout ignored (see top)."""
    assert not causal
    q, k, v = (qkv[:, i].float() for i in range(3))
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        logits = torch.einsum("ihd,jhd->hij", q[s:e], k[s:e]) * scale
        i = torch.arange(e - s)[:, None]
        j = torch.arange(e - s)[None, :]
        allowed = torch.ones(e - s, e - s, dtype=torch.bool)
        if window_size[0] >= 0:
            allowed &= j >= i - window_size[0]
        if window_size[1] >= 0:
            allowed &= j <= i + window_size[1]
        logits = logits.masked_fill(~allowed, float("-inf"))
        out[s:e] = torch.einsum("hij,jhd->ihd", logits.softmax(-1), v[s:e])
    return out.to(qkv.dtype)


class _TorchWithoutHalf(types.ModuleType):
    """``torch`` as their ``layers.py`` sees it, with ``float16`` meaning ``float32`` (no half cast)."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return torch.float32 if name == "float16" else getattr(torch, name)


def _cpu_bias_after(indice_conv):  # noqa: ANN001, ANN202
    """spconv's CPU kernels refuse a fused bias (eval-mode biased convs); add it after the convolution instead."""

    def conv(*args, bias=None, **kwargs):  # noqa: ANN001, ANN202
        out = indice_conv(*args, bias=None, **kwargs)
        return out if bias is None else out + bias

    return conv


def import_reference(ref: Path):  # noqa: ANN201
    import spconv.pytorch.ops as ops

    from models.spconv_cpu import apply_cpu_fixes

    apply_cpu_fixes()
    ops.indice_conv = _cpu_bias_after(ops.indice_conv)
    fa = types.ModuleType("flash_attn")
    fa.flash_attn_varlen_qkvpacked_func = flash_attn_varlen_qkvpacked_func
    sys.modules["flash_attn"] = fa
    sys.path.insert(0, str(ref))
    import model.layers as layers  # noqa: PLC0415  (their package)
    from model.encoders import MSM3D_Encoder  # noqa: PLC0415

    return MSM3D_Encoder, layers


def room_corner(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of a floor, two walls and a box in a 0.3 m corner (metres), with colours (0-255) and unit normals."""
    rng = np.random.default_rng(seed)
    parts = []

    def plane(n: int, origin, u, v, normal, colour) -> None:  # noqa: ANN001
        a, b = rng.uniform(0, 1, (2, n))
        p = np.asarray(origin) + a[:, None] * np.asarray(u) + b[:, None] * np.asarray(v)
        c = np.clip(np.asarray(colour) + rng.normal(0, 12, (n, 3)), 0, 255)
        parts.append(np.concatenate([p, c, np.broadcast_to(normal, (n, 3))], 1))

    plane(400, (0, 0, 0), (0.3, 0, 0), (0, 0.3, 0), (0, 0, 1), (150, 120, 90))
    plane(250, (0, 0, 0), (0.3, 0, 0), (0, 0, 0.24), (0, 1, 0), (200, 200, 190))
    plane(250, (0, 0, 0), (0, 0.3, 0), (0, 0, 0.24), (1, 0, 0), (180, 190, 200))
    plane(60, (0.15, 0.12, 0.08), (0.08, 0, 0), (0, 0.06, 0), (0, 0, 1), (40, 80, 160))
    plane(50, (0.15, 0.12, 0), (0.08, 0, 0), (0, 0, 0.08), (0, -1, 0), (40, 80, 160))
    pts = np.concatenate(parts).astype(np.float32)
    return pts[:, :3], pts[:, 3:]


def scan(seed: int, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One point per 2 cm voxel (as their ``GridSample`` keeps), features ``[colour / 127.5 - 1, normal]``."""
    xyz, rest = room_corner(seed)
    grid = np.floor((xyz + shift) / 0.02).astype(np.int64)
    grid -= grid.min(0)
    _, first = np.unique(grid, axis=0, return_index=True)
    first = np.sort(first)
    feat = np.concatenate([rest[first, :3] / 127.5 - 1.0, rest[first, 3:]], 1)
    return grid[first].astype(np.int32), feat.astype(np.float32)


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("gamma"):
                p.copy_(0.6 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def run(encoder: torch.nn.Module, grid: np.ndarray, feat: np.ndarray, offset: np.ndarray) -> list:
    batch = np.repeat(np.arange(len(offset)), np.diff(offset, prepend=0))
    import spconv.pytorch as spconv

    x = spconv.SparseConvTensor(torch.from_numpy(feat), torch.from_numpy(
        np.concatenate([batch[:, None], grid], 1).astype(np.int32)).contiguous(),
        (grid.max(0) + 96).tolist(), len(offset))
    with torch.no_grad():
        _, levels = encoder(x)
    return levels  # finest first


def check_published(ref: Path, MSM3D_Encoder, layers, seed: int) -> None:  # noqa: ANN001, N803
    import tempfile

    from model_cfg import ENCODER_L_MODEL  # their published configuration

    from models.converters import convert

    cfg = {k: v for k, v in ENCODER_L_MODEL.items() if k != "type"}
    torch.manual_seed(seed)
    encoder = MSM3D_Encoder(**cfg)
    randomise(encoder, torch.Generator().manual_seed(seed))
    encoder.eval()
    g0, f0 = scan(seed, np.zeros(3, np.float32))
    g1, f1 = scan(seed + 1, np.array([0.007, 0.013, 0.003], np.float32))
    grid, feat = np.concatenate([g0, g1]), np.concatenate([f0, f1])
    offset = np.array([len(g0), len(g0) + len(g1)], np.int64)
    torch_module = layers.torch
    layers.torch = _TorchWithoutHalf("torch")
    try:
        theirs = run(encoder, grid, feat, offset)[::-1]
    finally:
        layers.torch = torch_module
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_best.pth"
        torch.save({"epoch": 1, "state_dict": OrderedDict((f"module.student.{k}", v)
                                                          for k, v in encoder.state_dict().items())}, path)
        ours = convert("msm", path)
    with torch.no_grad():
        out = ours({"grid_coord": torch.from_numpy(grid), "feat": torch.from_numpy(feat),
                    "offset": torch.from_numpy(offset)})
    print(f"published size: {sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M parameters, {len(grid)} points")
    for lvl, (x, lv, n) in enumerate(zip(theirs, out["levels"], out["num_sites"])):
        key = lambda t: ((t[:, 0] * 4096 + t[:, 1]) * 4096 + t[:, 2]) * 4096 + t[:, 3]  # noqa: E731
        mine = lv.indices[:n].long()[:, [0, 3, 2, 1]]
        a, b = torch.argsort(key(mine)), torch.argsort(key(x.indices.long()))
        assert torch.equal(mine[a], x.indices.long()[b])
        diff = float((lv.features[:n][a] - x.features[b]).abs().max())
        print(f"level {lvl}: {n} sites x {x.features.shape[1]}, |feat| max {float(x.features.abs().max()):.3f}, "
              f"max |ours - theirs| {diff:.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="the msm checkout's inference/ folder")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "tests" / "golden")
    p.add_argument("--check-published", action="store_true", help="compare at the published size, write nothing")
    args = p.parse_args()
    torch.set_num_threads(1)

    MSM3D_Encoder, layers = import_reference(args.reference.resolve())
    if args.check_published:
        check_published(args.reference.resolve(), MSM3D_Encoder, layers, args.seed)
        return
    torch.manual_seed(args.seed)
    encoder = MSM3D_Encoder(**SMALL)
    randomise(encoder, torch.Generator().manual_seed(args.seed))
    encoder.eval()

    g0, f0 = scan(args.seed, np.zeros(3, np.float32))
    g1, f1 = scan(args.seed + 1, np.array([0.007, 0.013, 0.003], np.float32))
    grid, feat = np.concatenate([g0, g1]), np.concatenate([f0, f1])
    offset = np.array([len(g0), len(g0) + len(g1)], np.int64)

    torch_module = layers.torch
    layers.torch = _TorchWithoutHalf("torch")
    try:
        levels = run(encoder, grid, feat, offset)
    finally:
        layers.torch = torch_module
    half = run(encoder, grid, feat, offset)

    # Windowed attention with their curves in a fixed order: shuffle off, so the blocks of a level use
    # xyz z-order, then yxz z-order (their list order), and 8 sites each side.
    for mod in encoder.modules():
        if isinstance(mod, layers.SpaceFillingCurves):
            mod.shuffle = False
        if isinstance(mod, layers.ResFormer):
            mod.window_size = WINDOWED
    layers.torch = _TorchWithoutHalf("torch")
    try:
        windowed = run(encoder, grid, feat, offset)
    finally:
        layers.torch = torch_module

    half_window = min(SMALL["window_sizes"] + SMALL["dec_window_sizes"]) // 2
    out = {"grid_coord": grid, "feat": feat, "offset": offset}
    for lvl, (x, xh) in enumerate(zip(levels[::-1], half[::-1])):  # coarsest first, as our levels
        counts = torch.bincount(x.indices[:, 0].long())
        attends = SMALL["dec_att_layers"][lvl] or SMALL["att_layers"][::-1][lvl]
        assert not attends or int(counts.max()) <= half_window + 1, "scene too large: attention windows would matter"
        out[f"level{lvl}_indices"] = x.indices.numpy().astype(np.int32)  # (batch, x, y, z)
        out[f"level{lvl}_features"] = x.features.numpy()
        assert torch.equal(windowed[::-1][lvl].indices, x.indices)
        out[f"level{lvl}_windowed_features"] = windowed[::-1][lvl].features.numpy()
        out[f"level{lvl}_fp16_effect"] = np.float32((xh.features - x.features).abs().max())
        print(f"level {lvl}: {len(x.indices)} sites x {x.features.shape[1]}, |feat| max "
              f"{float(x.features.abs().max()):.3f}, fp16-cast effect {float(out[f'level{lvl}_fp16_effect']):.2e}, "
              f"window {WINDOWED} vs whole scan "
              f"{float(np.abs(out[f'level{lvl}_windowed_features'] - out[f'level{lvl}_features']).max()):.2e}")

    state = OrderedDict((f"module.student.{k}", v.clone()) for k, v in encoder.state_dict().items())
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": state}, args.out / "msm_small.pth")
    np.savez_compressed(args.out / "msm_small.npz", **out)
    print(f"wrote {args.out / 'msm_small.pth'} ({sum(v.numel() for v in state.values())} parameters) and "
          f"{args.out / 'msm_small.npz'} ({len(grid)} points)")


if __name__ == "__main__":
    main()
