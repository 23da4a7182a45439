"""Supervised fine-tuning as an objective, so that fine-tuning runs on the one training loop (devices, precision,
exact resume, NaN guard, metrics) exactly like pretraining.

The trained module is a :class:`models.heads.PredictionModel` (encoder + one head per embedding view). Losses:

- regression: ``MSE`` on targets standardised with the training labels' mean and std (NaN targets are skipped,
  as in multi-task chemprop/GROVER);
- binary / multilabel: binary cross-entropy with logits (NaN labels skipped); multiclass: cross-entropy;
- with several views (GROVER's node-view and edge-view readouts) each view's prediction is trained and a
  consistency term ``view_consistency * MSE(p_1, p_2)`` pulls them together (GROVER's ``dist_coff``, 0.1).

Modes (set by :mod:`pretrain.finetune`): the encoder initialised from a pretrained folder (``init_from``) or at
random (``scratch``); frozen (``freeze_encoder``: the linear-probe protocol, encoder kept in eval mode) or trained
with layer-wise learning-rate decay: the encoder's top-level blocks, in order, get ``lr * layer_decay ** (L - i)``
(BEiT/ELECTRA), the heads the full rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrain.config import ConfigError
from pretrain.objectives.base import Objective, batch_input

TASKS = ("regression", "binary", "multiclass", "multilabel", "segmentation")


def batch_targets(batch: Any) -> Tensor:
    """Targets of a batch: ``y`` of a graph batch, or ``label``/``y`` of a dict batch."""
    if isinstance(batch, dict):
        for key in ("y", "label", "segment"):
            if key in batch:
                return batch[key]
        raise KeyError(f"batch has no 'y' or 'label'; keys: {sorted(batch)}")
    return batch.y


def model_input(batch: Any) -> Any:
    """The encoder input of a batch: the tensor of a dict batch (signals, images), or the batch itself (a point
    dict, a graph batch)."""
    if isinstance(batch, dict) and "grid_coord" not in batch:
        return batch_input(batch)
    return batch


def batch_extra(batch: Any) -> Tensor | None:
    """Per-sample extra features (``descriptors``) where the batch has them."""
    return batch.get("descriptors") if isinstance(batch, dict) else getattr(batch, "descriptors", None)


class Supervised(Objective):
    """Supervised fine-tuning of a prediction model (regression, binary, multiclass or multilabel).

    Args:
        encoder: a :class:`models.heads.PredictionModel` (``model.name: prediction_model``).
        task: ``regression``, ``binary``, ``multiclass`` or ``multilabel``; must match the model's.
        init_from: a pretrained encoder folder (``save_pretrained`` format) whose weights initialise the model's
            encoder; ``None`` trains from scratch.
        freeze_encoder: train the heads only, on frozen features.
        layer_decay: learning-rate decay per encoder block, from the heads down (1 = none).
        view_consistency: weight of the MSE between the views' predictions.
        class_weight: multiclass only: ``"balanced"`` weights the cross-entropy of class c by ``N / (K n_c)`` of
            the training labels (rare beats or events count as much as common ones); None: unweighted.
    """

    name = "supervised"
    self_supervised = False
    views = 0
    sample_kinds = ("signal", "image", "graph", "points")

    def __init__(self, encoder: nn.Module, task: str = "regression", init_from: str | None = None,
                 freeze_encoder: bool = False, layer_decay: float = 1.0, view_consistency: float = 0.1,
                 class_weight: str | None = None) -> None:
        super().__init__(encoder)
        if not hasattr(encoder, "heads") or not hasattr(encoder, "predict"):
            raise ConfigError("objective supervised: model.name must be prediction_model (an encoder plus heads)")
        if task not in TASKS:
            raise ConfigError(f"objective.task: {task!r} is not one of {', '.join(TASKS)}")
        if task != encoder.task:
            raise ConfigError(f"objective.task: {task!r} but the model was built for {encoder.task!r}")
        if not 0.0 < float(layer_decay) <= 1.0:
            raise ConfigError(f"objective.layer_decay: must be in (0, 1], got {layer_decay!r}")
        if class_weight not in (None, "balanced") or (class_weight and task != "multiclass"):
            raise ConfigError(f"objective.class_weight: 'balanced' (multiclass tasks) or null, got {class_weight!r} "
                              f"for task {task!r}")
        self.class_weight = class_weight
        self.register_buffer("class_weights", None, persistent=False)
        self.task, self.freeze, self.layer_decay = task, bool(freeze_encoder), float(layer_decay)
        self.view_consistency = float(view_consistency)
        if init_from:
            load_encoder_weights(encoder.encoder, Path(init_from))
        if self.freeze:
            for p in encoder.encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Supervised":
        super().train(mode)
        if self.freeze:  # frozen features: no dropout, no batch-norm statistics updates
            self.encoder.encoder.eval()
        return self

    def bind_dataset(self, dataset: Any) -> None:
        """Standardise regression targets with the training labels' mean and std (stored in the model); with
        ``class_weight: balanced``, weigh the classes by the training labels' inverse frequency."""
        if self.class_weight == "balanced":
            y = np.asarray(dataset.targets()).reshape(-1)
            y = y[np.isfinite(y)].astype(np.int64)
            k = int(self.encoder.out_dim)
            counts = np.bincount(y[(y >= 0) & (y < k)], minlength=k).astype(np.float64)
            w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1.0)), 0.0)
            self.class_weights = torch.as_tensor(w, dtype=torch.float32)
        if self.task != "regression":
            return
        y = np.asarray(dataset.targets(), dtype=np.float64)
        y = y.reshape(len(y), -1)
        mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.encoder.target_mean.copy_(torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32))
        self.encoder.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: (layer, decay/no-decay) with ``lr_scale`` from the layer-wise decay; biases and norms
        undecayed."""
        blocks = [m for _, m in self.encoder.encoder.named_children()]
        depth = len(blocks)
        owner: dict[int, int] = {}
        for i, block in enumerate(blocks):
            for p in block.parameters():
                owner[id(p)] = i
        groups: dict[tuple[float, bool], list[Tensor]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            layer = owner.get(id(p), depth)  # heads (and anything outside the encoder's blocks) at full rate
            scale = self.layer_decay ** (depth - layer)
            decay = p.ndim >= 2
            groups.setdefault((scale, decay), []).append(p)
        return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "decay": decay, "lr_scale": scale}
                for (scale, decay), ps in groups.items()]

    def _loss(self, out: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        model = self.encoder
        scalars: dict[str, Tensor] = {}
        if self.task in ("multiclass", "segmentation"):  # segmentation: one class per point, -1 ignored
            target = y.reshape(-1).long()
            if self.task == "segmentation":
                loss = sum(F.cross_entropy(o.float(), target, ignore_index=-1) for o in out) / len(out)
                known = target >= 0
                scalars["accuracy"] = (out.mean(0).argmax(1)[known] == target[known]).float().mean().detach()
                return loss, scalars
            loss = sum(F.cross_entropy(o.float(), target, weight=self.class_weights) for o in out) / len(out)
            scalars["accuracy"] = (out.mean(0).argmax(1) == target).float().mean().detach()
        else:
            y = y.reshape(out.shape[1], -1).to(out.dtype)
            known = torch.isfinite(y)
            if not known.any():
                return out.sum() * 0.0, scalars
            if self.task == "regression":
                target = (y - model.target_mean) / model.target_std
                per = torch.stack([F.mse_loss(o.float()[known], target.float()[known]) for o in out])
                scalars["rmse"] = (((out.mean(0).float() - target.float())[known] ** 2).mean().sqrt()
                                   * model.target_std.mean()).detach()
            else:
                per = torch.stack([F.binary_cross_entropy_with_logits(o.float()[known], y.float()[known]) for o in out])
            loss = per.mean()
        if len(out) > 1 and self.view_consistency:
            consistency = F.mse_loss(out[0].float(), out[1:].float().mean(0))
            loss = loss + self.view_consistency * consistency
            scalars["view_gap"] = consistency.detach()
        return loss, scalars

    def forward(self, batch: Any) -> dict[str, Tensor]:
        out = self.encoder(model_input(batch), batch_extra(batch))
        loss, scalars = self._loss(out, batch_targets(batch))
        return {"loss": loss, **scalars}

    @torch.no_grad()
    def monitor(self, batch: Any) -> dict[str, float]:
        """The held-out batch's loss (and RMSE / accuracy), in place of RankMe."""
        out = self.encoder(model_input(batch), batch_extra(batch))
        loss, scalars = self._loss(out, batch_targets(batch))
        return {"val_loss": float(loss), **{f"val_{k}": float(v) for k, v in scalars.items() if k != "view_gap"}}

    @torch.no_grad()
    def embed(self, batch: Any) -> Tensor:
        return self.encoder.embed(model_input(batch))


def load_encoder_weights(encoder: nn.Module, directory: Path) -> None:
    """Copy a pretrained folder's weights into ``encoder`` (same architecture), refusing a mismatch in one line."""
    import models

    try:
        pretrained = models.load_pretrained(directory)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"objective.init_from: {e}") from None
    want, have = getattr(encoder, "config", {}), getattr(pretrained, "config", {})
    if want.get("name") != have.get("name"):
        raise ConfigError(f"objective.init_from: {directory} holds {have.get('name')!r}, the model's encoder is "
                          f"{want.get('name')!r}")
    try:
        encoder.load_state_dict(pretrained.state_dict(), strict=True)
    except RuntimeError as e:
        raise ConfigError(f"objective.init_from: {directory}: weights do not fit the encoder "
                          f"({str(e).splitlines()[0][:160]})") from None
