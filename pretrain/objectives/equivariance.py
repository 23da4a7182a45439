"""Equivariance by classification: predict which discrete transform was applied to the input.

Rotation prediction (Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations",
ICLR 2018) generalised to any finite transform set, as in E-SSL (Dangovski et al., "Equivariant Contrastive
Learning", ICLR 2022) and its LiDAR use (rotation bins). Continuous transforms can be regressed instead
(MSE on the parameter); E-SSL finds contrastive objectives serve them better, so regression is an option.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.heads import MLPHead
from pretrain.config import ConfigError
from pretrain.distributed import full_precision
from pretrain.objectives.base import Objective, batch_input

__all__ = ["CONTINUOUS_TRANSFORMS", "DISCRETE_TRANSFORMS", "Equivariance", "EquivarianceClassificationLoss"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _time_reverse(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


def _negate(x: torch.Tensor) -> torch.Tensor:
    return -x


def _time_reverse_negate(x: torch.Tensor) -> torch.Tensor:
    return -torch.flip(x, dims=(-1,))


def _channel_reverse(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(1,))


def _vertical_flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-2,))


def _rotate90(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 1, dims=(-2, -1))


def _rotate180(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 2, dims=(-2, -1))


def _rotate270(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 3, dims=(-2, -1))


#: Named transforms of a batch ``[B, C, ...]`` usable from YAML. For 1-D signals ``[B, C, T]`` the default
#: set {identity, time reversal, polarity inversion, both} is the group Z2 x Z2: every element is a
#: different, label-free symmetry of a physiological waveform that a good encoder should *see* (an ECG
#: beat played backwards or upside down is not a plausible beat). ``channel_reverse`` suits sensors
#: whose channel order is arbitrary (PPG), not ECG leads. Images: flips and the quarter-turn rotations
#: (``rot90``/``rot270`` need square inputs).
DISCRETE_TRANSFORMS: dict[str, Transform] = {
    "identity": _identity,
    "time_reverse": _time_reverse,
    "negate": _negate,
    "time_reverse_negate": _time_reverse_negate,
    "channel_reverse": _channel_reverse,
    "hflip": _time_reverse,
    "vflip": _vertical_flip,
    "rot90": _rotate90,
    "rot180": _rotate180,
    "rot270": _rotate270,
}

#: Continuous transforms that can be regressed: name -> apply(x [B, ...], parameter [B]).
#: ``scale`` multiplies each sample by ``exp(p)``, ``p ~ U(log lo, log hi)``, and the target is ``p`` (the
#: log amplitude); it only makes sense for encoders that do not normalise their input per sample.
def _log_scale(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x * torch.exp(p).reshape(-1, *([1] * (x.ndim - 1)))


CONTINUOUS_TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"scale": _log_scale}


class EquivarianceClassificationLoss(nn.Module):
    """Cross-entropy of the predicted transform index (Gidaris et al., ICLR 2018; Dangovski et al., E-SSL,
    ICLR 2022).

        L = -mean_i log softmax(logits_i)[k_i]

    where ``k_i`` is the index of the transform applied to sample ``i``. A per-sample mean: under DDP
    (equal local batch sizes) the mean over processes is the loss of the concatenated batch.

    Args:
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.

    Shapes: ``logits``: ``[n, K]``; ``target``: int64 ``[n]``; returns a scalar.

    >>> loss_fn = EquivarianceClassificationLoss()
    >>> abs(loss_fn(torch.zeros(4, 4), torch.tensor([0, 1, 2, 3])).item() - math.log(4)) < 1e-6
    True
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"objective.label_smoothing: must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(full_precision(logits), target, label_smoothing=self.label_smoothing)


def _resolve(transforms: Sequence[str | Transform]) -> tuple[list[Transform], list[str]]:
    if isinstance(transforms, str) or len(transforms) < 2:
        raise ConfigError(f"objective.transforms: needs a list of at least 2 transforms, got {transforms!r}")
    fns, names = [], []
    for t in transforms:
        if callable(t):
            fns.append(t)
            names.append(getattr(t, "__name__", repr(t)))
        elif t in DISCRETE_TRANSFORMS:
            fns.append(DISCRETE_TRANSFORMS[t])
            names.append(t)
        else:
            raise ConfigError(
                f"objective.transforms: unknown transform {t!r}; known: {', '.join(DISCRETE_TRANSFORMS)}"
            )
    return fns, names


class Equivariance(Objective):
    """Equivariance by classification: each sample of the batch gets one of K discrete transforms, drawn
    uniformly, and a head on the pooled features predicts which (:class:`EquivarianceClassificationLoss`).
    Optionally a continuous transform is applied too and its parameter regressed with MSE:

        L = CE(head(f(T_k g_p x)), k) + w * MSE(reg(f(T_k g_p x)), p)

    Args (the YAML ``objective:`` options):
        encoder: a module with ``embed_dim`` and ``embed(x) -> [B, embed_dim]``.
        transforms: names from :data:`DISCRETE_TRANSFORMS` or callables mapping a batch ``[b, ...]`` to one
            of the same shape; default: the 1-D signal group {identity, time reversal, polarity inversion,
            both}. Images pass e.g. ``["identity", "rot90", "rot180", "rot270"]``.
        head_hidden_dim: hidden width of the classification (and regression) heads.
        continuous: None, or a name from ``CONTINUOUS_TRANSFORMS`` (``"scale"``) to regress.
        continuous_range: ``(lo, hi)`` of the continuous parameter (for ``scale``: amplitude factors).
        continuous_weight: ``w``.
        label_smoothing: of the cross-entropy.

    Options are keyword arguments; the registry rejects keys that are not in the signature.

    Batch: ``batch["signal"]`` ``[B, C, T]`` or ``batch["image"]`` ``[B, C, H, W]`` (raw samples, views = 0).

    >>> class Tiny(nn.Module):
    ...     embed_dim = 8
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2 * 16, 8)
    ...     def embed(self, x):
    ...         return self.lin(x.flatten(1))
    >>> out = Equivariance(Tiny(), head_hidden_dim=16, continuous="scale")({"signal": torch.randn(4, 2, 16)})
    >>> sorted(out)
    ['accuracy', 'classification', 'loss', 'regression']
    """

    name: ClassVar[str] = "equivariance"
    views: ClassVar[int] = 0
    sample_kinds: ClassVar[tuple[str, ...]] = ("signal", "image")

    def __init__(
        self,
        encoder: nn.Module,
        *,
        transforms: Sequence[str | Transform] = ("identity", "time_reverse", "negate", "time_reverse_negate"),
        head_hidden_dim: int = 512,
        continuous: str | None = None,
        continuous_range: Sequence[float] = (0.5, 2.0),
        continuous_weight: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(encoder)
        self.transforms, self.transform_names = _resolve(transforms)
        if isinstance(head_hidden_dim, bool) or not isinstance(head_hidden_dim, int) or head_hidden_dim <= 0:
            raise ConfigError(f"objective.head_hidden_dim: must be a positive integer, got {head_hidden_dim!r}")
        if continuous is not None and continuous not in CONTINUOUS_TRANSFORMS:
            raise ConfigError(
                f"objective.continuous: unknown transform {continuous!r}; known: {', '.join(CONTINUOUS_TRANSFORMS)}"
            )
        lo, hi = (float(v) for v in continuous_range)
        if not 0 < lo <= hi:
            raise ConfigError(f"objective.continuous_range: must satisfy 0 < lo <= hi, got {list(continuous_range)}")
        if not continuous_weight >= 0:
            raise ConfigError(f"objective.continuous_weight: must be >= 0, got {continuous_weight}")
        self.continuous = continuous
        self.log_range = (math.log(lo), math.log(hi))
        self.continuous_weight = float(continuous_weight)
        self.loss_fn = EquivarianceClassificationLoss(label_smoothing=label_smoothing)
        embed_dim = int(encoder.embed_dim)
        self.head = MLPHead(embed_dim, [head_hidden_dim], len(self.transforms))
        self.regressor = MLPHead(embed_dim, [head_hidden_dim], 1) if continuous is not None else None

    def apply_transforms(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x[i]`` transformed by ``transforms[labels[i]]``; shapes ``[B, ...]`` and int64 ``[B]``."""
        out = x.clone()
        for k, fn in enumerate(self.transforms):
            idx = torch.nonzero(labels == k).squeeze(1)
            if idx.numel() == 0:
                continue
            y = fn(x[idx])
            if y.shape != out[idx].shape:
                raise ConfigError(
                    f"objective.transforms: {self.transform_names[k]!r} changes the shape "
                    f"{tuple(x[idx].shape)} -> {tuple(y.shape)}"
                )
            out[idx] = y
        return out

    def draws(self, batch: dict[str, Any], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's transform index and continuous draw ``u ~ U(0, 1)``, from its own seed when the batch
        has seeds (the loop's), so a sample is transformed the same whatever the processes or micro-batches
        it is in; from torch's generator otherwise."""
        seeds = batch.get("seed")
        if seeds is None:
            return torch.randint(len(self.transforms), (n,), device=device), torch.rand(n, device=device)
        draws = [np.random.default_rng([int(s), 0x4551]).random(2) for s in torch.as_tensor(seeds).tolist()]
        k = len(self.transforms)
        labels = torch.tensor([min(k - 1, int(d[0] * k)) for d in draws], device=device)
        return labels, torch.tensor([d[1] for d in draws], device=device)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch_input(batch)
        labels, u = self.draws(batch, x.shape[0], x.device)
        x = self.apply_transforms(x, labels)
        param: torch.Tensor | None = None
        if self.continuous is not None:
            lo, hi = self.log_range
            param = lo + (hi - lo) * u.to(x.dtype)
            x = CONTINUOUS_TRANSFORMS[self.continuous](x, param)
        features = self.encoder.embed(x)
        logits = self.head(features)
        classification = self.loss_fn(logits, labels)
        out = {
            "classification": classification.detach(),
            "accuracy": (logits.argmax(dim=1) == labels).float().mean().detach(),
        }
        loss = classification
        if self.regressor is not None and param is not None:
            regression = F.mse_loss(full_precision(self.regressor(features).squeeze(1)), full_precision(param))
            loss = loss + self.continuous_weight * regression
            out["regression"] = regression.detach()
        return {"loss": loss, **out}
