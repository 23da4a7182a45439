"""MSM checkpoints convert to ``SparseUNet(layout="msm")`` and compute what the authors' encoder computes.

tests/golden/msm_small.pth is a checkpoint in their save format written by their ``MSM3D_Encoder`` (4 levels,
8/8/16/16 channels, ResNet and attention blocks at varying levels, every parameter randomised);
tests/golden/msm_small.npz holds two synthetic scans and their features at every decoder level
(benchmarks/parity/msm_golden.py --reference PATH, which documents what it patched to run their code on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F

import models
from models.converters import ConversionError, convert
from models.converters.msm import kernel_to_ours
from models.msm_blocks import windowed_attention

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CKPT = GOLDEN / "msm_small.pth"

pytestmark = pytest.mark.usefixtures("one_thread")


def _keys(idx: torch.Tensor) -> torch.Tensor:
    i = idx.long()
    return ((i[:, 0] * 1024 + i[:, 1]) * 1024 + i[:, 2]) * 1024 + i[:, 3]


def _same_sites(ours_zyx: torch.Tensor, feats: torch.Tensor, theirs_xyz: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Our rows and their rows in one common site order (asserting that the site sets are equal)."""
    ours = ours_zyx.long()[:, [0, 3, 2, 1]]
    a, b = torch.argsort(_keys(ours)), torch.argsort(_keys(theirs_xyz))
    assert torch.equal(ours[a], theirs_xyz.long()[b])
    return feats[a], b


@pytest.fixture(scope="module")
def golden() -> dict:
    with np.load(GOLDEN / "msm_small.npz") as g:
        return {k: torch.from_numpy(g[k]) for k in g.files}


def _points(golden: dict) -> dict:
    return {"grid_coord": golden["grid_coord"], "feat": golden["feat"], "offset": golden["offset"]}


def test_every_decoder_level_equals_the_reference(golden, tmp_path):
    model = convert("msm", CKPT, tmp_path / "enc")
    assert model.level_channels == (16, 16, 8, 8) and model.strides == (8, 4, 2, 1)
    cfg = model.config
    assert cfg["channels"] == [8, 8, 16, 16] and cfg["enc_blocks"] == [1, 2, 0, 0] and cfg["enc_attn"] == [0, 0, 2, 1]
    assert cfg["dec_blocks"] == [1, 0, 1, 1] and cfg["dec_attn"] == [1, 1, 0, 0] and cfg["enc_heads"] == [1, 1, 2, 2]
    reloaded = models.load_pretrained(tmp_path / "enc")
    with torch.no_grad():
        outs = [model(_points(golden)), reloaded(_points(golden))]
    for lvl in range(4):
        ref = golden[f"level{lvl}_features"]
        for out in outs:
            n = out["num_sites"][lvl]
            feats, rows = _same_sites(out["levels"][lvl].indices[:n], out["levels"][lvl].features[:n],
                                      golden[f"level{lvl}_indices"])
            # float32 rounding; their fp16 attention cast alone moves these features by up to golden fp16_effect
            np.testing.assert_allclose(feats.numpy(), ref[rows].numpy(), atol=5e-6, rtol=0)
        assert float(ref.abs().max()) > 1.0  # features are not trivially small


def test_windowed_attention_along_their_curves_equals_the_reference(golden):
    """Their second pass: curve shuffle off (a level's blocks use the xyz, then the yxz z-order curve) and a 16-site
    window, so the stride-4 attention sees only part of a scan; our Z-order serialisation gives the same features."""
    model = convert("msm", CKPT)
    windowed = models.create("sparse_unet", **{**{k: v for k, v in model.config.items() if k != "name"},
                                               "attn_window": 16})
    windowed.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = windowed(_points(golden))
    for lvl in range(4):
        n = out["num_sites"][lvl]
        feats, rows = _same_sites(out["levels"][lvl].indices[:n], out["levels"][lvl].features[:n],
                                  golden[f"level{lvl}_indices"])
        np.testing.assert_allclose(feats.numpy(), golden[f"level{lvl}_windowed_features"][rows].numpy(), atol=5e-6,
                                   rtol=0)
    # the window matters here: the whole-scan features are far from these
    assert float((golden["level1_windowed_features"] - golden["level1_features"]).abs().max()) > 0.1


def test_kernel_permutation_between_xyz_and_zyx_sites():
    """spconv over their (b, x, y, z) sites with kernel W == spconv over our (b, z, y, x) sites with
    ``kernel_to_ours(W)``, for the three conv kinds of the network; W itself (no permutation) differs."""
    torch.manual_seed(0)
    xyz = torch.unique(torch.randint(0, 9, (250, 3)), dim=0)
    sites = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1).int()
    feat = torch.randn(len(xyz), 3)
    cases = [spconv.SubMConv3d(3, 4, 3, padding=1, bias=False, indice_key="s"),
             spconv.SparseConv3d(3, 4, 2, stride=2, bias=False, indice_key="d")]
    for conv in cases:
        w = torch.randn_like(conv.weight)
        outs = []
        for idx, weight in ((sites, w), (sites[:, [0, 3, 2, 1]].contiguous(), kernel_to_ours(w)),
                            (sites[:, [0, 3, 2, 1]].contiguous(), w)):
            conv.weight.data = weight
            x = spconv.SparseConvTensor(feat, idx, [10, 10, 10], 1)
            y = conv(x)
            if isinstance(conv, spconv.SparseConv3d):  # and back up through the inverse conv of the same rulebook
                inv = spconv.SparseInverseConv3d(4, 3, 2, bias=False, indice_key="d")
                inv.weight.data = weight.permute(4, 1, 2, 3, 0).contiguous()
                y = inv(y.replace_feature(y.features.tanh()))
            outs.append((y.indices, y.features))
        (theirs_idx, theirs), (ours_idx, ours), (wrong_idx, wrong) = outs
        ours, rows = _same_sites(ours_idx, ours, theirs_idx)
        np.testing.assert_allclose(ours.detach().numpy(), theirs[rows].detach().numpy(), atol=1e-5)
        wrong, rows = _same_sites(wrong_idx, wrong, theirs_idx)
        assert float((wrong - theirs[rows]).abs().max()) > 0.1


def test_windowed_attention_equals_masked_dense_attention():
    """Windowing on its own, blockwise over long sequences: |i - j| <= w inside each sequence, against a dense
    masked softmax."""
    torch.manual_seed(1)
    counts, half = [37, 5, 90], 7
    q, k, v = torch.randn(3, sum(counts), 2, 4).unbind(0)
    got = windowed_attention(q, k, v, counts, half)
    start = 0
    for n in counts:
        s = slice(start, start + n)
        logits = torch.einsum("ihd,jhd->hij", q[s], k[s]) / 2.0
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        p = logits.masked_fill((i - j).abs() > half, float("-inf")).softmax(-1)
        np.testing.assert_allclose(got[s].numpy(), torch.einsum("hij,jhd->ihd", p, v[s]).numpy(), atol=1e-5)
        start += n
    full = windowed_attention(q, k, v, counts, 1000)
    assert float((full - got).abs().max()) > 1e-2


def test_other_checkpoints_are_refused_in_one_line(tmp_path):
    sd = torch.load(CKPT, weights_only=True)["state_dict"]
    cases = {
        "bare.pth": {k: v for k, v in sd.items()},  # no "state_dict" entry, keys are not under module.student.
        "teacher.pth": {"state_dict": {k.replace("student", "teacher"): v for k, v in sd.items()}},
        "missing.pth": {"state_dict": {k: v for k, v in sd.items() if "resnet_dec.2.0.conv2" not in k}},
        "extra.pth": {"state_dict": {**sd, "module.student.final_stem.weight": torch.zeros(4, 8)}},
        "shape.pth": {"state_dict": {**sd, "module.student.skip.1.gamma": torch.zeros(1, 9)}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ConversionError) as e:
            convert("msm", tmp_path / name)
        msg = str(e.value)
        assert "\n" not in msg and name in msg, msg
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ConversionError, match="text.pth"):
        convert("msm", tmp_path / "text.pth")


def test_layout_msm_trains_and_takes_the_decoder_hook(golden):
    """The converted layout is a normal SparseUNet: gradients reach every parameter, the hook may append sites."""
    torch.manual_seed(0)
    model = models.create("sparse_unet", in_channels=6, channels=[8, 8, 16], decoder_channels=[16, 8, 8],
                          layout="msm", enc_blocks=1, dec_blocks=1, enc_attn=[0, 0, 1], dec_attn=[1, 0, 0],
                          enc_heads=2, dec_heads=2)
    seen = []

    def hook(i, x):  # one extra site per level, a copy of the first
        seen.append(i)
        return spconv.SparseConvTensor(torch.cat([x.features, x.features[:1]]),
                                       torch.cat([x.indices, x.indices[:1]]).contiguous(), x.spatial_shape,
                                       x.batch_size)

    out = model(_points(golden), decoder_hook=hook)
    assert seen == [0, 1, 2] and [lv.features.shape[0] - n for lv, n in zip(out["levels"], out["num_sites"])] == [1] * 3
    sum(F.mse_loss(lv.features, torch.zeros_like(lv.features)) for lv in out["levels"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
