"""Cross-modal contrastive alignment of simultaneous windows of two signals, e.g. PPG and ECG.

Beyond the wearable foundation-model paper (which trains PPG and ECG encoders separately): where a record holds
both signals (PhysioNet/CinC Challenge 2015 ICU records: ECG lead II and PLETH at 250 Hz), the PPG window and the
ECG window of the same seconds show the same heart beats, so their embeddings are pulled together against the
other windows of the batch, CLIP-style (Radford et al., ICML 2021), with the shared
:class:`~pretrain.objectives.infonce.InfoNCELoss`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from models.heads import MLPHead
from pretrain.config import ConfigError
from pretrain.objectives.base import Objective, batch_input
from pretrain.objectives.infonce import InfoNCELoss

__all__ = ["CrossModal"]


class CrossModal(Objective):
    """Symmetric InfoNCE between the embeddings of two simultaneous signals of one window.

    With ``x`` float[B, C, T] a batch of windows, ``a = x[:, primary_channels]`` (PPG, seen by the exported
    ``encoder``) and ``b = x[:, partner_channels]`` (ECG, seen by the partner encoder), projectors ``g_a``, ``g_b``
    and ``p_i = g_a(f_a(a_i))``, ``q_i = g_b(f_b(b_i))``:

        L = 1/2 [InfoNCE(p, q) + InfoNCE(q, p)]

    where ``InfoNCE(p, q) = mean_i -log softmax_j(cos(p_i, q_j) / t)_i`` (:class:`InfoNCELoss`): the positive of a
    PPG window is the ECG window of the same seconds, the negatives are the ECG windows of the other items (other
    times or other records). Both encoders get gradients; only ``encoder`` is exported.

    Args (the YAML ``objective:`` options):
        encoder: the primary encoder (``embed_dim``, ``embed(x) -> [B, embed_dim]``).
        partner_model: ``models.create`` options of the partner encoder (default: ``efficientnet1d`` with one
            input channel per partner channel), or a module.
        primary_channels, partner_channels: channel indices of the two signals in ``batch["signal"]``.
        temperature: softmax temperature ``t`` (0.1).
        projector_hidden_dim: hidden width of both projectors (1024); 0 for a single linear layer.
        projector_dim: output width of both projectors (128).
        gather: negatives from every process under DDP.

    Batch: ``batch["signal"]`` float[B, C, T] holding both signals. Scalars: ``match_acc``, the share of PPG
    windows whose most similar ECG window in the batch is their own.

    >>> class Tiny(nn.Module):
    ...     embed_dim = 4
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(16, 4)
    ...     def embed(self, x):
    ...         return self.lin(x.flatten(1))
    >>> objective = CrossModal(Tiny(), partner_model=Tiny(), projector_hidden_dim=0, projector_dim=8)
    >>> sorted(objective({"signal": torch.randn(5, 2, 16)}))
    ['contrastive', 'loss', 'match_acc']
    """

    name: ClassVar[str] = "cross_modal"
    views: ClassVar[int] = 0
    batch_loss: ClassVar[bool] = True
    sample_kinds: ClassVar[tuple[str, ...]] = ("signal",)

    def __init__(
        self,
        encoder: nn.Module,
        *,
        partner_model: Mapping[str, Any] | nn.Module | None = None,
        primary_channels: Sequence[int] = (0,),
        partner_channels: Sequence[int] = (1,),
        temperature: float = 0.1,
        projector_hidden_dim: int = 1024,
        projector_dim: int = 128,
        gather: bool = True,
    ) -> None:
        super().__init__(encoder)
        self.primary_channels = self._channels("primary_channels", primary_channels)
        self.partner_channels = self._channels("partner_channels", partner_channels)
        if set(self.primary_channels) & set(self.partner_channels):
            raise ConfigError("objective.partner_channels: must not overlap objective.primary_channels")
        for option, width in (("projector_hidden_dim", projector_hidden_dim), ("projector_dim", projector_dim)):
            if isinstance(width, bool) or not isinstance(width, int) or width < (0 if "hidden" in option else 1):
                raise ConfigError(f"objective.{option}: must be a {'non-negative' if 'hidden' in option else 'positive'}"
                                  f" integer, got {width!r}")
        if isinstance(partner_model, nn.Module):
            self.partner = partner_model
        else:
            import models

            cfg = dict(partner_model or {"name": "efficientnet1d", "in_channels": len(self.partner_channels)})
            if "name" not in cfg:
                raise ConfigError("objective.partner_model: needs a 'name' (an encoder of models.list_models())")
            try:
                self.partner = models.create(cfg.pop("name"), **cfg)
            except ValueError as exc:
                raise ConfigError(f"objective.partner_model: {exc}") from None
        hidden = [projector_hidden_dim] if projector_hidden_dim else []
        self.projector = MLPHead(int(encoder.embed_dim), hidden, projector_dim)
        self.partner_projector = MLPHead(int(self.partner.embed_dim), hidden, projector_dim)
        self.loss_fn = InfoNCELoss(temperature=temperature, gather=gather)

    @staticmethod
    def _channels(option: str, value: Sequence[int]) -> tuple[int, ...]:
        channels = tuple(value) if isinstance(value, (list, tuple)) else ()
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels):
            raise ConfigError(f"objective.{option}: must be a non-empty list of channel indices, got {value!r}")
        return channels

    def _split(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch_input(dict(batch))
        need = max(self.primary_channels + self.partner_channels) + 1
        if x.ndim != 3 or x.shape[1] < need:
            raise ValueError(f"cross_modal: batch['signal'] must be [B, >= {need}, T], got {list(x.shape)}")
        return x[:, list(self.primary_channels)], x[:, list(self.partner_channels)]

    def project(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected embeddings ``(p, q)`` float[B, projector_dim] of the primary and partner signals."""
        a, b = self._split(batch)
        return self.projector(self.encoder.embed(a)), self.partner_projector(self.partner.embed(b))

    def embeddings(self, batch: dict[str, Any], targets: bool = True) -> dict[str, torch.Tensor]:
        """Both encoders' features; the projectors (batch-normalised) run in :meth:`loss_from`."""
        a, b = self._split(batch)
        return {"h": self.encoder.embed(a), "g": self.partner.embed(b)}

    def loss_from(self, rows: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        p, q = self.projector(rows["h"]), self.partner_projector(rows["g"])
        loss = 0.5 * (self.loss_fn(p, q) + self.loss_fn(q, p))
        with torch.no_grad():
            sim = nn.functional.normalize(p, dim=1) @ nn.functional.normalize(q, dim=1).T
            match = (sim.argmax(dim=1) == torch.arange(len(p), device=p.device)).float().mean()
        return {"loss": loss, "contrastive": loss.detach(), "match_acc": match}

    @torch.no_grad()
    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.encoder.embed(self._split(batch)[0])
