"""InfoNCE / NT-Xent with an optional momentum teacher, subject-aware negatives and the KoLeo regulariser.

The defaults follow the wearable-biosignal foundation models of Abbaspourazad et al. ("Large-scale Training
of Foundation Models for Wearable Biosignals", ICLR 2024): an EMA teacher (momentum 0.99) over encoder and
projector, a symmetrised loss student(view 1) vs teacher(view 2) and student(view 2) vs teacher(view 1),
temperature 0.04, no negatives from the same participant, and KoLeo (weight 0.1) on the normalised outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.heads import MLPHead
from pretrain.config import ConfigError
from pretrain.distributed import full_precision, gather_objects, gather_with_grad, rank
from pretrain.ema import cosine_momentum_at, ema_update, make_teacher
from pretrain.objectives.base import Objective

__all__ = ["InfoNCE", "InfoNCELoss", "KoLeoLoss", "NoNegatives", "check_negatives"]


def _global_rows(x: torch.Tensor, gather: bool) -> tuple[torch.Tensor, int]:
    """The gathered rows and the index of this process's first row in them."""
    if not gather:
        return x, 0
    return gather_with_grad(x), rank() * x.shape[0]


class NoNegatives(ConfigError):
    """A contrastive batch in which no sample has a single negative: the loss is exactly 0 and nothing is
    learned."""


def check_negatives(subjects: Sequence[Any]) -> None:
    """Refuse, in one line, a batch (all processes together) whose samples all share one subject while
    same-subject negatives are excluded: every query would have its positive alone, a loss of exactly 0."""
    everyone = gather_objects(list(subjects))
    distinct = set(everyone)
    if len(distinct) < 2:
        raise NoNegatives(
            f"objective.exclude_same_subject: all {len(everyone)} samples of the batch come from one subject "
            f"({next(iter(distinct))!r}), so no sample has a negative and the contrastive loss is exactly 0; "
            "give records of more subjects, or --set objective.exclude_same_subject=false to use other windows "
            "of the same subject as negatives")


class InfoNCELoss(nn.Module):
    """InfoNCE / NT-Xent between two sets of embeddings (van den Oord et al. 2018, "Representation Learning
    with Contrastive Predictive Coding"; Chen et al., SimCLR, ICML 2020), with cross-set negatives as in
    MoCo v3 and the wearable-biosignal models (Abbaspourazad et al., ICLR 2024).

    With ``q``, ``k`` L2-normalised, temperature ``t`` and the keys ``k_1..k_N`` of the whole (gathered)
    batch, query ``i`` has positive ``k_i`` and loss

        l_i = -log( exp(q_i . k_i / t) / sum_{j in A(i)} exp(q_i . k_j / t) ),   L = mean_i l_i

    where ``A(i)`` is every key, or, when subject ids are given, ``k_i`` plus the keys whose subject differs
    from query ``i``'s (same-participant samples are not negatives). Under DDP each process computes the
    mean over its own queries against the keys of every process (gathered with gradients); the mean over
    processes is the loss of the concatenated batch.

    Args:
        temperature: ``t`` > 0.
        gather: use the keys of every process as negatives.

    Shapes: ``query``, ``key``: ``[n, D]``; ``subjects``: ``n`` ids of the local batch, or None; returns a
    scalar.

    >>> loss_fn = InfoNCELoss(temperature=0.1)
    >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss_fn(q, k, subjects=["a", "a", "b", "c", "c", "d", "e", "f"]).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.1, gather: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"objective.temperature: must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather = gather

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, subjects: Sequence[str] | None = None
    ) -> torch.Tensor:
        n = query.shape[0]
        q = F.normalize(full_precision(query), dim=1)
        keys, offset = _global_rows(F.normalize(full_precision(key), dim=1), self.gather)
        with torch.autocast(q.device.type, enabled=False):  # logits / 0.04 amplify bf16 rounding
            logits = q @ keys.T / self.temperature  # [n, N]
        positives = torch.arange(offset, offset + n, device=q.device)
        if subjects is not None:
            if len(subjects) != n:
                raise ValueError(f"InfoNCELoss: {len(subjects)} subject ids for a batch of {n}")
            all_subjects = gather_objects(list(subjects)) if self.gather else list(subjects)
            codes: dict[Any, int] = {}
            ids = torch.tensor([codes.setdefault(s, len(codes)) for s in all_subjects], device=q.device)
            same = ids[offset : offset + n, None] == ids[None, :]
            same[torch.arange(n, device=q.device), positives] = False
            logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, positives)


class KoLeoLoss(nn.Module):
    """KoLeo regulariser (Sablayrolles et al., "Spreading vectors for similarity search", ICLR 2019; used in
    DINOv2): the negative log of each sample's distance to its nearest neighbour, which spreads the
    L2-normalised outputs uniformly over the sphere.

        x_i <- x_i / ||x_i||,   d_i = min_{j != i} ||x_i - x_j||,   L = -mean_i log(d_i + eps)

    Under DDP the neighbours are searched in the batch of every process (gathered with gradients) and each
    process averages over its own samples.

    Args:
        eps: keeps the log finite for duplicate samples.
        gather: search neighbours in the batch of every process.

    Shapes: ``x``: ``[n, D]`` (global batch of at least 2); returns a scalar.

    >>> KoLeoLoss()(torch.randn(8, 16)).shape
    torch.Size([])
    """

    def __init__(self, eps: float = 1e-8, gather: bool = True) -> None:
        super().__init__()
        if not eps > 0:
            raise ConfigError(f"objective.koleo_eps: must be > 0, got {eps}")
        self.eps = float(eps)
        self.gather = gather

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = F.normalize(full_precision(x), dim=1)
        rows, offset = _global_rows(x, self.gather)
        if rows.shape[0] < 2:
            raise ValueError("KoLeoLoss needs at least 2 samples in the (global) batch")
        with torch.no_grad():
            # On the sphere the nearest neighbour is the most similar one.
            similarity = x @ rows.T
            similarity[torch.arange(n, device=x.device), torch.arange(offset, offset + n, device=x.device)] = -3.0
            nearest = similarity.argmax(dim=1)
        distance = torch.linalg.vector_norm(x - rows[nearest], dim=1)
        return -torch.log(distance + self.eps).mean()


class _Tower(nn.Module):
    """``projector(encoder.embed(x))``: the student's branch, and the module the teacher copies."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: Any) -> torch.Tensor:
        return self.projector(self.encoder.embed(x))


class InfoNCE(Objective):
    """Contrastive objective: InfoNCE between two views, optionally against a momentum (EMA) teacher, with
    subject-aware negatives and the KoLeo regulariser.

    With a teacher (default): ``L = 1/2 [InfoNCE(s(y1), t(y2)) + InfoNCE(s(y2), t(y1))] + w_KoLeo * 1/2
    [KoLeo(s(y1)) + KoLeo(s(y2))]``, where ``s`` = projector o encoder, ``t`` its EMA copy updated in
    :meth:`on_step_end` (constant momentum, or a cosine schedule from ``momentum`` to ``momentum_end``).
    Without a teacher ``t = s`` (SimCLR-style, cross-view negatives, gradients through both branches).
    The student encoder is exported.

    Args (the YAML ``objective:`` options):
        encoder: a module with ``embed_dim`` and ``embed(x) -> [B, embed_dim]``.
        temperature: softmax temperature; default 0.04 with a teacher (wearable recipe), 0.1 without.
        momentum_teacher: use an EMA teacher for the keys.
        momentum: EMA momentum (0.99).
        momentum_end: if set, cosine schedule from ``momentum`` to this value over training.
        koleo_weight: weight of the KoLeo regulariser (0.1; 0 disables it).
        exclude_same_subject: drop negatives with the query's ``batch["subject"]`` (when the batch has one).
        projector_hidden_dim, projector_dim: projector ``embed_dim -> hidden -> out`` (1024, 128).
        gather: negatives and neighbours from every process under DDP.

    Options are keyword arguments; the registry rejects keys that are not in the signature.

    Batch: ``batch["views"]``: a tensor ``[2, B, ...]`` or a sequence of two encoder inputs; optional
    ``batch["subject"]``: ``B`` ids.

    >>> class Tiny(nn.Module):
    ...     embed_dim = 8
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2 * 16, 8)
    ...     def embed(self, x):
    ...         return self.lin(x.flatten(1))
    >>> objective = InfoNCE(Tiny(), projector_hidden_dim=32, projector_dim=16)
    >>> out = objective({"views": torch.randn(2, 4, 2, 16), "subject": ["a", "a", "b", "c"]})
    >>> sorted(out)
    ['contrastive', 'koleo', 'loss']
    >>> objective.on_step_end(1, 100)  # EMA update of the teacher
    """

    name: ClassVar[str] = "infonce"
    views: ClassVar[int] = 2
    sample_kinds: ClassVar[tuple[str, ...]] = ("signal", "image", "points", "graph")
    batch_loss: ClassVar[bool] = True
    loss_keys: ClassVar[tuple[str, ...]] = ("subject",)

    def __init__(
        self,
        encoder: nn.Module,
        *,
        temperature: float | None = None,
        momentum_teacher: bool = True,
        momentum: float = 0.99,
        momentum_end: float | None = None,
        koleo_weight: float = 0.1,
        exclude_same_subject: bool = True,
        projector_hidden_dim: int = 1024,
        projector_dim: int = 128,
        gather: bool = True,
    ) -> None:
        super().__init__(encoder)
        for option, width in (("projector_hidden_dim", projector_hidden_dim), ("projector_dim", projector_dim)):
            if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
                raise ConfigError(f"objective.{option}: must be a positive integer, got {width!r}")
        for option, m in (("momentum", momentum), ("momentum_end", momentum_end)):
            if m is not None and not 0.0 <= m <= 1.0:
                raise ConfigError(f"objective.{option}: must be in [0, 1], got {m}")
        if not koleo_weight >= 0:
            raise ConfigError(f"objective.koleo_weight: must be >= 0, got {koleo_weight}")
        if temperature is None:
            temperature = 0.04 if momentum_teacher else 0.1
        self.loss_fn = InfoNCELoss(temperature=temperature, gather=gather)
        self.koleo = KoLeoLoss(gather=gather)
        self.koleo_weight = float(koleo_weight)
        self.exclude_same_subject = bool(exclude_same_subject)
        self.momentum = float(momentum)
        self.momentum_end = None if momentum_end is None else float(momentum_end)
        self.projector = MLPHead(int(encoder.embed_dim), [projector_hidden_dim], projector_dim)
        # The tower is built on demand (not registered) so that encoder and projector keep one name each.
        self.teacher: nn.Module | None = (
            make_teacher(_Tower(self.encoder, self.projector)) if momentum_teacher else None
        )

    def _student(self) -> _Tower:
        return _Tower(self.encoder, self.projector)

    def bind_dataset(self, dataset: Any) -> None:
        """Refuse before the first step a training set of one subject when same-subject negatives are excluded."""
        subjects = getattr(dataset, "subjects", None)
        if self.exclude_same_subject and callable(subjects):
            names = subjects()
            if len(names) == 1:
                raise NoNegatives(
                    f"objective.exclude_same_subject: every training window comes from one subject ({names[0]!r}), "
                    "so no sample would have a negative and the contrastive loss would be exactly 0; give records "
                    "of more subjects, or --set objective.exclude_same_subject=false to use other windows of the "
                    "same subject as negatives")

    def embeddings(self, batch: dict[str, Any], targets: bool = True) -> dict[str, torch.Tensor]:
        """The student's (and teacher's) encoder features of both views; the projectors (batch-normalised) run in
        :meth:`loss_from`, on the whole batch."""
        views = batch["views"]
        y1, y2 = views[0], views[1]
        rows = {"h1": self.encoder.embed(y1), "h2": self.encoder.embed(y2)}
        if self.teacher is not None and targets:
            with torch.no_grad():
                rows["g1"], rows["g2"] = self.teacher.encoder.embed(y1), self.teacher.encoder.embed(y2)
        return rows

    def loss_from(self, rows: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        s1, s2 = self.projector(rows["h1"]), self.projector(rows["h2"])
        if self.teacher is not None:
            with torch.no_grad():
                t1, t2 = self.teacher.projector(rows["g1"]), self.teacher.projector(rows["g2"])
        else:
            t1, t2 = s1, s2
        subjects = batch.get("subject") if self.exclude_same_subject else None
        if subjects is not None:
            check_negatives(subjects)
        contrastive = 0.5 * (self.loss_fn(s1, t2, subjects) + self.loss_fn(s2, t1, subjects))
        out = {"contrastive": contrastive.detach()}
        loss = contrastive
        if self.koleo_weight > 0:
            koleo = 0.5 * (self.koleo(s1) + self.koleo(s2))
            loss = loss + self.koleo_weight * koleo
            out["koleo"] = koleo.detach()
        return {"loss": loss, **out}

    def momentum_at(self, step: int, total_steps: int) -> float:
        if self.momentum_end is None:
            return self.momentum
        return cosine_momentum_at(step, total_steps, self.momentum, self.momentum_end)

    def on_step_end(self, step: int, total_steps: int) -> None:
        if self.teacher is not None:
            ema_update(self.teacher, self._student(), self.momentum_at(step, total_steps))
