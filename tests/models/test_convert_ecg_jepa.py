"""ECG-JEPA checkpoints (kweimann/ECG-JEPA) -> our ViT1D, and our JEPA step against theirs.

Golden files (benchmarks/parity/ecg_jepa_golden.py, written by the authors' own code): ``ecg_jepa_a.pt`` is the
file their ``pretrain.py`` writes (``{'model', 'optimizer', 'config', 'step'}``; 8 leads at 250 Hz, 4 s, patch 10,
width 24, depth 2, 3 heads, MLP ratio 2, qkv bias, 2 registers), ``ecg_jepa_b.min.pt`` their minified form of a
second run (biases, no register, LayerScale), and ``ecg_jepa.npz`` their outputs on 3 windows: each target
encoder's linear-evaluation feature (mean over tokens, registers dropped) and tokens, and one JEPA step of run a
for saved masks (teacher tokens, context tokens, predictor output, L1 loss, gradients).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from models.converters import ConversionError, convert, list_sources
from models.converters.ecg_jepa import _ours
from pretrain.objectives import create as create_objective

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
CHKPT_A = GOLDEN / "ecg_jepa_a.pt"
CHKPT_B = GOLDEN / "ecg_jepa_b.min.pt"
FEATURE_ATOL = 1e-4  # the acceptance bound; measured 2.4e-7
TOKEN_ATOL = 2e-5  # measured 3.8e-6 (positions: ours in float64, theirs in float32)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "ecg_jepa.npz") as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def x(golden) -> torch.Tensor:
    return torch.from_numpy(golden["x"]).float()


def test_registered_and_needs_no_allow_list():
    assert "ecg_jepa" in list_sources()
    # their files hold only tensors and plain containers: weights_only reads them with nothing allowed
    obj = torch.load(CHKPT_A, map_location="cpu", weights_only=True)
    assert set(obj) == {"model", "optimizer", "config", "step"}


@pytest.mark.parametrize("chkpt,name", [(CHKPT_A, "a"), (CHKPT_B, "b")])
def test_converted_features_equal_reference(chkpt, name, golden, x):
    enc = convert("ecg_jepa", chkpt)
    cfg = torch.load(chkpt, map_location="cpu", weights_only=True)["config"]
    assert (enc.embed_dim, len(enc.blocks), enc.patch_size, enc.in_channels) == (24, 2, 10, 8)
    assert enc.blocks[0].attn.num_heads == cfg["num_heads"] == 3
    assert (0 if enc.registers is None else enc.registers.shape[1]) == cfg["num_registers"]
    assert (enc.blocks[0].attn_scale is not None) == (cfg["layer_scale_eps"] > 0)
    with torch.no_grad():
        feature, tokens = enc.embed(x), enc(x)
    ref_tokens = golden["step/target_tokens"] if name == "a" else golden[f"{name}/tokens"]
    assert np.abs(feature.numpy() - golden[f"{name}/feature"]).max() < FEATURE_ATOL
    assert np.abs(tokens.numpy() - ref_tokens).max() < TOKEN_ATOL


def _jepa_from_reference(state: dict[str, torch.Tensor], config: dict, target_norm: bool):
    enc = convert("ecg_jepa", CHKPT_A)
    obj = create_objective(enc, {"name": "jepa", "predictor_dim": config["pred_dim"],
                                 "predictor_depth": config["pred_depth"], "predictor_heads": config["pred_num_heads"],
                                 "target_norm": target_norm})
    names = {"encoder": "encoder", "teacher": "target_encoder", "predictor": "predictor"}
    for ours, theirs in names.items():
        sub = {_ours(k[len(theirs) + 1:]): v for k, v in state.items() if k.startswith(theirs + ".")}
        if ours == "predictor":
            sub = {re.sub(r"^embed\.", "proj_in.", re.sub(r"^proj\.", "proj_out.", k)): v for k, v in sub.items()}
        getattr(obj, ours).load_state_dict(sub, strict=True)
    return obj


def _step(obj, x, golden):
    keep = torch.from_numpy(golden["mask_encoder"])
    masked = torch.from_numpy(golden["mask_predictor"])
    obj.masks = lambda batch, n: (keep, masked)  # the reference's saved masks instead of ours
    captured = {}
    for name in ("teacher", "encoder", "predictor"):
        getattr(obj, name).register_forward_hook(
            lambda mod, inp, out, name=name: captured.__setitem__(name, out.detach()))
    out = obj({"signal": x})
    out["loss"].backward()
    return out["loss"].item(), captured


def test_jepa_step_equals_reference(golden, x):
    chkpt = torch.load(CHKPT_A, map_location="cpu", weights_only=True)
    obj = _jepa_from_reference(chkpt["model"], chkpt["config"], target_norm=False)
    loss, got = _step(obj, x, golden)
    assert np.abs(got["teacher"].numpy() - golden["step/target_tokens"]).max() < TOKEN_ATOL
    assert np.abs(got["encoder"].numpy() - golden["step/context_tokens"]).max() < TOKEN_ATOL
    assert np.abs(got["predictor"].numpy() - golden["step/prediction"]).max() < TOKEN_ATOL
    assert loss == pytest.approx(float(golden["step/loss"]), rel=1e-5)
    theirs = {k[len("grad/"):]: v for k, v in golden.items() if k.startswith("grad/")}
    ours = {}
    for prefix, module in (("encoder", obj.encoder), ("predictor", obj.predictor)):
        for k, p in module.named_parameters():
            ours[f"{prefix}.{k}"] = p.grad.numpy()
    rename = {re.sub(r"^predictor\.proj\.", "predictor.proj_out.", re.sub(r"^predictor\.embed\.", "predictor.proj_in.",
              k.split(".", 1)[0] + "." + _ours(k.split(".", 1)[1]))): k for k in theirs}
    assert set(rename) == set(ours)
    for k, g in ours.items():
        ref = theirs[rename[k]]
        assert np.abs(g - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-3), k
    assert all(p.grad is None for p in obj.teacher.parameters())


def test_target_norm_is_the_documented_difference(golden, x):
    """I-JEPA's extra LayerNorm of the targets (our default) changes the loss on trained weights; see jepa.py."""
    chkpt = torch.load(CHKPT_A, map_location="cpu", weights_only=True)
    loss, _ = _step(_jepa_from_reference(chkpt["model"], chkpt["config"], target_norm=True), x, golden)
    assert abs(loss - float(golden["step/loss"])) > 1e-3


def test_target_norm_option_is_checked():
    from pretrain.config import ConfigError

    with pytest.raises(ConfigError, match="objective.target_norm: expected true/false, got 'no'"):
        create_objective(models.create("vit1d_xs", dim=24, depth=1, num_heads=3), {"name": "jepa", "target_norm": "no"})


def test_cli_convert_then_load_pretrained(tmp_path, golden, x):
    out = tmp_path / "encoder"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pretrain", "convert", "ecg_jepa", str(CHKPT_A), "--out", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "converted:" in r.stdout
    enc = models.load_pretrained(out)
    with torch.no_grad():
        assert np.abs(enc.embed(x).numpy() - golden["a/feature"]).max() < FEATURE_ATOL
    extra = enc.pretrained_extra
    assert extra["modality"] == "ecg" and extra["objective"] == "jepa"
    assert extra["data"] == {"fs": 250, "window_s": 4.0, "leads": ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"],
                             "clip": 5.0}
    assert extra["ecg_jepa"]["channel_size"] == 1000 and extra["ecg_jepa"]["step"] == 30
    assert extra["converted_from"]["file"] == CHKPT_A.name


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_other_checkpoints_are_refused(tmp_path):
    state = torch.load(CHKPT_A, map_location="cpu", weights_only=True)
    cases = {
        "tensors.pt": ({"w": torch.zeros(3)}, "not an ECG-JEPA checkpoint"),
        "tensor.pt": (torch.zeros(3), "not an ECG-JEPA checkpoint"),
        "grover.pt": ({"state_dict": {"w": torch.zeros(3)}, "args": Namespace(hidden_size=100)}, "reads safely"),
        "finetuned.pt": ({**state, "eval_config": {"frozen": True}}, "fine-tuned classifier"),
        "no_target.pt": ({"model": {"encoder.norm.weight": torch.ones(24)}, "config": state["config"]},
                         "no target_encoder"),
        "wrong_config.pt": ({**state, "config": {**state["config"], "dim": 32, "num_registers": 1}},
                            "config and weights disagree: dim 32 in config, 24 in the weights; num_registers 1"),
        "bad_heads.pt": ({**state, "config": {**state["config"], "num_heads": 5}}, "num_heads 5"),
    }
    for name, (obj, msg) in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(ConversionError) as e:
            convert("ecg_jepa", path)
        assert msg in _one_line(e, path), name
