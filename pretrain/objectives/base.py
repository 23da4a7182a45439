"""The Objective contract.

An objective is an ``nn.Module`` that owns everything trained besides the data: the encoder it receives,
plus projectors, predictors and EMA teachers. The loop only calls the methods below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


class Objective(nn.Module):
    """Base class of every self-supervised objective.

    Class attributes:
        name: registry name (``--objective NAME``).
        views: 0 if the objective consumes raw samples (JEPA, denoisers), else the number of augmented
            views it needs per sample (joint-embedding objectives); batches then carry
            ``batch["views"]`` of shape ``[V, B, ...]``.
        sample_kinds: the sample conventions it can serve (``"signal"``, ``"image"``, ``"points"``, ``"graph"``).
    """

    name: ClassVar[str] = ""
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ()
    self_supervised: ClassVar[bool] = True  # False: needs labels (fine-tuning); not offered for pretraining
    # Objectives whose loss couples the samples of a batch (batch statistics, negatives, neighbours) set
    # ``batch_loss`` and split ``forward`` into :meth:`embeddings` (per-sample rows, the memory-heavy part)
    # and :meth:`loss_from` (the loss on the rows of the whole batch). The loop then splits a batch that does
    # not fit into micro-batches exactly, with the gradient cache (pretrain/micro.py). ``loss_keys`` are the
    # batch entries :meth:`loss_from` reads besides the rows (e.g. subject ids).
    batch_loss: ClassVar[bool] = False
    loss_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Return ``{"loss": scalar tensor, **scalars}`` for one batch."""
        if self.batch_loss:
            return self.loss_from(self.embeddings(batch), batch)
        raise NotImplementedError

    def embeddings(self, batch: dict[str, Any], targets: bool = True) -> dict[str, torch.Tensor]:
        """``batch_loss`` objectives: the per-sample rows ``{name: [B, ...]}`` their loss is computed from.
        With ``targets=False`` rows that carry no gradient (an EMA teacher's) may be left out: the gradient
        cache recomputes only the rows it back-propagates through."""
        raise NotImplementedError

    def loss_from(self, rows: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``batch_loss`` objectives: ``{"loss": ..., **scalars}`` from the rows of :meth:`embeddings` of the
        whole batch; ``batch`` holds at least :attr:`loss_keys`."""
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (EMA updates, schedules)."""

    def bind_dataset(self, dataset: Any) -> None:
        """Called once by the loop with the training dataset, before the optimiser is built: objectives whose heads
        depend on the data (GROVER's vocabulary sizes) build them here."""

    def export_files(self, directory: Path) -> None:
        """Called after the encoder is exported to ``directory``: write what must travel with it (GROVER's
        ``vocab.json``)."""

    @torch.no_grad()
    def monitor(self, batch: dict[str, Any]) -> dict[str, float]:
        """Label-free scalars on the loop's fixed held-out batch (every ``train.rankme_every`` steps).

        The default is RankMe and the embedding std of :meth:`embed` (the loop's collapse detector reads
        ``"rankme"``). Objectives without an embedding, such as denoisers, override this with what tells their
        progress without labels (a held-out loss; PSNR against a simulated clean reference when the batch has one).
        """
        from pretrain.monitors import embedding_std, rankme

        z = self.embed(batch).float()
        return {"rankme": rankme(z), "embed_std": embedding_std(z)}

    @torch.no_grad()
    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """float[B, D] features of the raw (un-augmented) inputs, for monitoring and probes."""
        return self.export_encoder().embed(batch_input(batch))

    def export_encoder(self) -> nn.Module:
        """The encoder saved as the public artefact (an EMA teacher where the method evaluates that one)."""
        return self.encoder


def batch_input(batch: dict[str, Any]) -> torch.Tensor:
    """The model input of a batch under the sample conventions (signals and images)."""
    for key in ("signal", "image"):
        if key in batch:
            return batch[key]
    raise KeyError(f"batch has none of 'signal'/'image'; keys: {sorted(batch)}")
