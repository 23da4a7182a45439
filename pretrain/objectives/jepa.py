"""Joint-Embedding Predictive Architecture for token encoders (I-JEPA, Assran et al. 2023; ECG-JEPA,
Weimann & Conrad 2024).

A context encoder sees only visible tokens; a narrow predictor, given their features and the positions of the
masked tokens, predicts the features an EMA target encoder computes for the masked tokens from the full input:

    loss = mean_{b, j in masked} | P(E(x_visible), j) - LN(E_ema(x))_j |_1

with LN a LayerNorm without affine parameters and the target momentum going linearly from 0.998 to 0.9995.
The EMA target encoder is the exported artefact, as in the papers' evaluation.

Against the ECG-JEPA authors' code (kweimann/ECG-JEPA; golden test tests/models/test_convert_ecg_jepa.py):
for the same weights, input and masks, teacher tokens, context tokens, predictor output, loss and every gradient
agree to float32 rounding when ``target_norm=False``. Deliberate differences:

- ``target_norm`` (default on) is I-JEPA's extra LayerNorm of the targets; ECG-JEPA's code compares with the
  target encoder's output as it is (its final LayerNorm has a learned gain). At initialisation (gain 1) the targets
  differ by at most 1.2e-5 (the two epsilons); after training they do not agree: on the golden checkpoint (30 steps
  at lr 1e-2) the loss is 0.4672 without and 0.4610 with it. ``objective.target_norm=false`` reproduces the
  reference.
- the predictor's residual projections are initialised with std ``0.02 / sqrt(2 * predictor depth)``; the
  reference uses the encoder's depth. Initialisation only, and the same in every published configuration
  (predictor depth = encoder depth).
- masks come from :func:`pretrain.masking.batch_block_masks` (seeded per sample, so runs resume exactly), not from
  the reference's NumPy-global ``MaskCollator``; both keep 15-25 % with masked runs of >= ``min_block`` tokens.
- EMA timing: the reference updates the target at the start of step k with momentum m(k) (a no-op at k = 0); the
  loop calls ``on_step_end(k + 1)`` after step k's optimiser step, so every forward sees the same target. Only the
  exported target differs: ours includes the update after the last step, the reference's checkpoint does not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.transformer import gather_tokens
from models.vit1d import ViT1DPredictor
from pretrain.config import ConfigError
from pretrain.ema import ema_update, make_teacher, momentum_at
from pretrain.masking import batch_block_masks
from pretrain.objectives.base import Objective, batch_input


class JEPA(Objective):
    """Masked-token feature prediction against an EMA teacher.

    Args:
        encoder: a token encoder with ``tokens``/``forward(x, keep)``, ``patch_size``, ``embed_dim`` and ``blocks``
            (e.g. :class:`models.vit1d.ViT1D`).
        keep: range of the visible fraction of tokens (0.15, 0.25).
        min_block: minimum length of a masked run of tokens (10).
        ema: target momentum at the first and last step (0.998, 0.9995).
        loss: ``"l1"`` (ECG-JEPA) or ``"smooth_l1"`` (I-JEPA / Kim 2024).
        predictor_dim, predictor_depth, predictor_heads: predictor size; by default half the encoder width and
            the encoder's depth and heads (the papers' XS 96/8/4, S 192/8/6, B 384/12/12). Its blocks take the
            encoder's MLP ratio, biases and LayerNorm epsilon, as ECG-JEPA's predictor does.
        target_norm: LayerNorm (no affine) the teacher's tokens before the loss (I-JEPA); ``False`` compares with
            the teacher's output as it is (ECG-JEPA's code).
    """

    name = "jepa"
    views = 0
    sample_kinds = ("signal",)

    def __init__(self, encoder: nn.Module, keep: tuple[float, float] | list[float] = (0.15, 0.25), min_block: int = 10,
                 ema: tuple[float, float] | list[float] = (0.998, 0.9995), loss: str = "l1",
                 predictor_dim: int | None = None, predictor_depth: int | None = None,
                 predictor_heads: int | None = None, target_norm: bool = True) -> None:
        super().__init__(encoder)
        for attr in ("tokens", "patch_size", "embed_dim", "blocks"):
            if not hasattr(encoder, attr):
                raise ConfigError(f"objective jepa: encoder {type(encoder).__name__} is not a token encoder (no {attr!r})")
        keep = tuple(float(v) for v in keep)
        if len(keep) != 2 or not 0.0 < keep[0] <= keep[1] < 1.0:
            raise ConfigError(f"objective.keep: need 0 < low <= high < 1, got {list(keep)}")
        if min_block < 1:
            raise ConfigError(f"objective.min_block: must be >= 1, got {min_block}")
        ema = tuple(float(v) for v in ema)
        if len(ema) != 2 or not all(0.0 <= m <= 1.0 for m in ema):
            raise ConfigError(f"objective.ema: need two momenta in [0, 1], got {list(ema)}")
        if not isinstance(target_norm, bool):
            raise ConfigError(f"objective.target_norm: use true or false, got {target_norm!r}")
        if loss not in ("l1", "smooth_l1"):
            raise ConfigError(f"objective.loss: use 'l1' or 'smooth_l1', got {loss!r}")
        self.keep, self.min_block, self.ema, self.loss_name = keep, int(min_block), ema, loss
        self.target_norm = target_norm
        d = encoder.embed_dim
        pdim = int(predictor_dim or d // 2)
        pheads = int(predictor_heads or encoder.blocks[0].attn.num_heads)
        pdepth = int(predictor_depth or len(encoder.blocks))
        if pdim <= 0 or pdepth <= 0 or pheads <= 0 or pdim % pheads:
            raise ConfigError(f"objective.predictor_*: width {pdim} must be > 0 and divisible by heads {pheads}; depth {pdepth} > 0")
        block = encoder.blocks[0]
        self.predictor = ViT1DPredictor(
            d, dim=pdim, depth=pdepth, num_heads=pheads, mlp_ratio=block.mlp[0].out_features / d,
            qkv_bias=block.attn.qkv.bias is not None, bias=block.norm1.bias is not None, norm_eps=block.norm1.eps)
        self.teacher = make_teacher(encoder)
        self._momentum = ema[0]

    def masks(self, batch: dict[str, Any], n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch_input(batch)
        seeds = batch.get("seed")
        if seeds is None:  # direct use outside the loop: draw from torch's generator
            seeds = torch.randint(0, 2**62, (x.shape[0],))
        step_seed = int(batch.get("step_seed", int(seeds[0])))
        keep, masked = batch_block_masks(seeds, step_seed, n_tokens, self.keep, self.min_block)
        return keep.to(x.device), masked.to(x.device)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch_input(batch)
        n = self.encoder.num_tokens(x.shape[-1])
        keep, masked = self.masks(batch, n)
        with torch.no_grad():
            h = self.teacher(x)
            target = gather_tokens(F.layer_norm(h, h.shape[-1:]) if self.target_norm else h, masked)
        ctx = self.encoder(x, keep)
        pred = self.predictor(ctx, keep, masked, n)
        if self.loss_name == "l1":
            loss = F.l1_loss(pred.float(), target.float())
        else:
            loss = F.smooth_l1_loss(pred.float(), target.float())
        return {"loss": loss, "keep_frac": torch.tensor(keep.shape[1] / n), "momentum": torch.tensor(self._momentum)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self._momentum = momentum_at(step, total_steps, *self.ema)
        ema_update(self.teacher, self.encoder, self._momentum)

    def export_encoder(self) -> nn.Module:
        return self.teacher
