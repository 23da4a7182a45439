"""Heads on top of pooled encoder features: MLP projectors / predictors and linear heads.

Objectives build projectors and predictors from :class:`MLPHead`; probes and fine-tuning use
:class:`LinearHead`. Bad widths raise ``ValueError`` with one line (``models`` never imports ``pretrain``;
objectives check their own options first and raise ``ConfigError`` naming the option).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LinearHead", "MLPHead", "PredictionHead", "PredictionModel"]


def _check_width(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")


class MLPHead(nn.Module):
    """Multi-layer perceptron projector / predictor (SimCLR, Barlow Twins, VICReg, BYOL).

    For hidden widths ``h_1..h_L``::

        x -> [Linear(h_i) -> BatchNorm1d -> ReLU] for i = 1..L -> Linear(out_dim) [-> BatchNorm1d(affine=False)]

    A Linear followed by BatchNorm has no bias (the norm's shift replaces it). ``last_batch_norm`` adds a
    non-affine BatchNorm on the output, as in the MoCo v3 / SimCLR v2 projectors.

    Args:
        in_dim: input width (the encoder's ``embed_dim``).
        hidden_dims: widths of the hidden layers; empty for a single linear layer.
        out_dim: output width.
        batch_norm: BatchNorm1d after each hidden linear layer.
        last_batch_norm: non-affine BatchNorm1d on the output.

    Shapes: ``[B, in_dim] -> [B, out_dim]``.

    >>> head = MLPHead(256, [1024], 128)
    >>> head(torch.randn(8, 256)).shape
    torch.Size([8, 128])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_width("in_dim", in_dim)
        _check_width("out_dim", out_dim)
        hidden_dims = list(hidden_dims)
        for i, width in enumerate(hidden_dims):
            _check_width(f"hidden_dims[{i}]", width)
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        width_in = in_dim
        for width in hidden_dims:
            layers.append(nn.Linear(width_in, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            width_in = width
        layers.append(nn.Linear(width_in, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearHead(nn.Module):
    """A linear classifier / regressor on frozen or fine-tuned features.

    ``y = W BN(x) + b``, where the optional non-affine BatchNorm standardises features whose scale varies
    between encoders (MAE's linear-probe protocol). Weights start small (std 0.01) and the bias at zero.

    Args:
        in_dim: feature width.
        out_dim: number of classes or regression targets.
        batch_norm: non-affine BatchNorm1d on the input features.

    Shapes: ``[B, in_dim] -> [B, out_dim]``.

    >>> LinearHead(256, 5)(torch.randn(4, 256)).shape
    torch.Size([4, 5])
    """

    def __init__(self, in_dim: int, out_dim: int, batch_norm: bool = False) -> None:
        super().__init__()
        _check_width("in_dim", in_dim)
        _check_width("out_dim", out_dim)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.norm: nn.Module = nn.BatchNorm1d(in_dim, affine=False) if batch_norm else nn.Identity()
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class PredictionHead(nn.Module):
    """The fine-tuning head of one embedding view (chemprop / GROVER feed-forward network)::

        [x ; extra] -> [Dropout -> Linear(h_i) -> ReLU] for i = 1..L -> Dropout -> Linear(out_dim)

    ``extra`` are per-sample features concatenated to the embedding (GROVER's normalised RDKit descriptors).
    No hidden widths gives a linear head (the linear-probe mode). ``input_norm``: a BatchNorm without affine
    parameters on the embedding first (MAE's linear-probe head), for encoders whose pooled features vary by a tiny
    fraction of their norm (a ViT's mean-pooled tokens are mostly the shared position code).

    Shapes: ``[B, in_dim], [B, extra_dim] -> [B, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: Sequence[int] = (), dropout: float = 0.0,
                 input_norm: int = 0) -> None:
        super().__init__()
        _check_width("in_dim", in_dim)
        _check_width("out_dim", out_dim)
        self.norm = nn.BatchNorm1d(input_norm, affine=False) if input_norm else None
        layers: list[nn.Module] = []
        width = in_dim
        for i, h in enumerate(hidden_dims):
            _check_width(f"hidden_dims[{i}]", h)
            layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Dropout(dropout), nn.Linear(width, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return self.net(x if extra is None else torch.cat([x, extra.to(x.dtype)], dim=1))


class PredictionModel(nn.Module):
    """A fine-tuned model: an encoder plus one :class:`PredictionHead` per embedding view.

    Encoders with several readouts (``embed_views(x)`` and ``view_dims``; GROVER's node-view and edge-view atom
    means) get one head each and the prediction is their mean (GROVER's two-branch fine-tuning); others get one head
    on ``embed(x)``. Regression outputs are learnt on standardised targets: :meth:`predict` maps them back with the
    buffers ``target_mean`` / ``target_std`` (set from the training labels by the fine-tuning objective), so the
    saved model predicts in the data's units. Classification outputs are logits.

    Args:
        encoder: the encoder (built by :func:`models.create` from the ``encoder`` config of ``prediction_model``,
            which is what the model's saved config records).
        out_dim: number of targets (regression), classes (multiclass) or labels (binary / multilabel).
        extra_dim: width of per-sample extra features concatenated to each view (0: none).
        hidden_dims: widths of the heads' hidden layers (empty: linear heads).
        dropout: dropout in the heads.
        input_norm: normalise each view's embedding with a BatchNorm without affine parameters before its head.
        task: ``regression``, ``binary``, ``multiclass``, ``multilabel`` (one prediction per sample) or
            ``segmentation`` (one per point: the head reads ``encoder.point_features(x, "last")``).

    Shapes: ``forward(x, extra) -> float[V, B, out_dim]`` (one row per view); ``predict(x, extra) -> float[B, out_dim]``.
    """

    TASKS = ("regression", "binary", "multiclass", "multilabel", "segmentation")

    def __init__(self, encoder: nn.Module, out_dim: int = 1, extra_dim: int = 0, hidden_dims: Sequence[int] = (256,),
                 dropout: float = 0.1, task: str = "regression", input_norm: bool = False) -> None:
        super().__init__()
        if task not in self.TASKS:
            raise ValueError(f"task: {task!r} is not one of {', '.join(self.TASKS)}")
        if isinstance(extra_dim, bool) or not isinstance(extra_dim, int) or extra_dim < 0:
            raise ValueError(f"extra_dim: must be an integer >= 0, got {extra_dim!r}")
        self.encoder = encoder
        if task == "segmentation":  # per-point logits on the encoder's point features (finest decoder level)
            if not hasattr(self.encoder, "point_features"):
                name = getattr(encoder, "config", {}).get("name", type(encoder).__name__)
                raise ValueError(f"task: segmentation needs an encoder with point_features, not {name!r}")
            extra_dim = 0
        dims = list(getattr(self.encoder, "view_dims", ())) if hasattr(self.encoder, "embed_views") else []
        self.multi_view = bool(dims) and task != "segmentation"
        # segmentation reads point_features(x, "last"), the finest level: level_channels[-1] wide, not embed_dim
        width = self.encoder.level_channels[-1] if task == "segmentation" else self.encoder.embed_dim
        dims = (dims if self.multi_view else []) or [int(width)]
        self.heads = nn.ModuleList(PredictionHead(d + extra_dim, out_dim, list(hidden_dims), dropout,
                                                  input_norm=d if input_norm else 0) for d in dims)
        self.task, self.out_dim, self.extra_dim = task, out_dim, extra_dim
        self.register_buffer("target_mean", torch.zeros(out_dim))
        self.register_buffer("target_std", torch.ones(out_dim))

    def views(self, x: object) -> list[torch.Tensor]:
        if self.task == "segmentation":
            return [self.encoder.point_features(x, levels="last")]
        return self.encoder.embed_views(x) if self.multi_view else [self.encoder.embed(x)]

    def forward(self, x: object, extra: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([head(z, extra) for head, z in zip(self.heads, self.views(x))])

    def predict(self, x: object, extra: torch.Tensor | None = None) -> torch.Tensor:
        """The mean over views, in the targets' units (regression) or as logits (classification)."""
        out = self(x, extra).mean(0)
        return out * self.target_std + self.target_mean if self.task == "regression" else out

    def embed(self, x: object) -> torch.Tensor:
        return self.encoder.embed(x)
