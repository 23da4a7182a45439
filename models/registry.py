"""The encoders, created by name: ``create(name, **cfg)`` builds a registered encoder and records its config
(what :func:`models.save_pretrained` writes); ``list_models(pattern)`` lists the names.

Builders are registered as ``"module:Class"`` and imported when used, so that listing the encoders or building a
ViT imports neither spconv nor torch_geometric: each modality's extra (``pip install modalities[signals]``, ...)
installs only what its encoders need, and an encoder whose library is missing is refused in one line naming the
extra."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from models.heads import PredictionModel

__all__ = ["ModelSpec", "create", "describe", "list_models", "options", "signature_options"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered encoder: its builder (whose keyword arguments, with their type hints, are the encoder's typed
    options), the registered size's defaults, one line of description, and ``options`` where the builder takes
    ``**kwargs`` (then the options it passes on)."""

    builder: Callable[..., nn.Module] | str  # or "module:Class", imported on first use
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    options: Callable[[], dict[str, Any]] | None = None
    extra: str = ""  # the pip extra that installs the libraries the builder's module imports

    def build_fn(self) -> Callable[..., nn.Module]:
        if not isinstance(self.builder, str):
            return self.builder
        module, attr = self.builder.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            how = f": pip install 'modalities[{self.extra}]'" if self.extra else ""
            raise ValueError(f"model.name: {module} needs the package {e.name!r}, which is not installed{how}") from None


def signature_options(fn: Callable[..., Any], skip: int = 0) -> dict[str, Any]:
    """``{option: type hint}`` of a class's constructor or a function's keyword arguments, after the first ``skip``
    (``self`` excluded): the typed options of encoders and objectives, which their constructors declare."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation that does not resolve: the names are still checked
        hints = {}
    params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"][skip:]
    return {p.name: hints.get(p.name, Any) for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _prediction_model(encoder: dict, **kwargs: Any) -> PredictionModel:
    """A :class:`PredictionModel` around the encoder built from its config (``name`` plus options)."""
    if not isinstance(encoder, dict) or "name" not in encoder:
        raise ValueError("encoder: must be an encoder config with a 'name'")
    cfg = dict(encoder)
    return PredictionModel(create(cfg.pop("name"), **cfg), **kwargs)


_VIT, _GROVER, _SPARSE = "models.vit1d:ViT1D", "models.grover:GTransEncoder", "models.sparse_unet:SparseUNet"
_REGISTRY: dict[str, ModelSpec] = {
    "prediction_model": ModelSpec(_prediction_model, dict(encoder={"name": "grover_tiny"}),
                                  "a fine-tuned model: any encoder + one prediction head per embedding view",
                                  lambda: {"encoder": dict, **signature_options(PredictionModel, skip=1)}),
    "vit1d_xs": ModelSpec(_VIT, dict(dim=192, depth=8, num_heads=4), "ECG-JEPA ViT-XS, 3.6M parameters"),
    "vit1d_s": ModelSpec(_VIT, dict(dim=384, depth=8, num_heads=6), "ECG-JEPA ViT-S, 14.3M parameters"),
    "vit1d_b": ModelSpec(_VIT, dict(dim=768, depth=12, num_heads=12), "ECG-JEPA ViT-B, 85M parameters"),
    "efficientnet1d": ModelSpec("models.efficientnet1d:EfficientNet1D", dict(in_channels=4, embed_dim=256),
                                "1-D EfficientNet, 16 MBConv+SE blocks -> 256-d (wearable PPG/ECG), 3.2M parameters"),
    "eegformer_xs": ModelSpec("models.eegformer:EEGFormer", dict(dim=64, depth=2, num_heads=4, codebook_size=128),
                              "EEGFormer-style channel-independent FFT-token transformer + VQ codebook, 0.1M parameters"),
    "eegformer_s": ModelSpec("models.eegformer:EEGFormer", dict(dim=128, depth=4, num_heads=4, codebook_size=256),
                             "EEGFormer-style channel-independent FFT-token transformer + VQ codebook, 0.8M parameters"),
    "grover_tiny": ModelSpec(_GROVER, dict(hidden=100, heads=1, depth=4, dropout=0.1),
                             "GROVER GTransEncoder (molecules), hidden 100, 1 head, 0.8M parameters", extra="molecules"),
    "grover_base": ModelSpec(_GROVER, dict(hidden=800, heads=4, depth=4, dropout=0.1),
                             "GROVER-base GTransEncoder (molecules), hidden 800, 4 heads, 48M parameters",
                             extra="molecules"),
    "grover_large": ModelSpec(_GROVER, dict(hidden=1200, heads=4, depth=4, dropout=0.1),
                              "GROVER-large GTransEncoder (molecules), hidden 1200, 4 heads, 107M parameters",
                              extra="molecules"),
    "sparse_unet": ModelSpec(_SPARSE, dict(in_channels=4, channels=[32, 64, 128, 256, 384], enc_blocks=2, dec_blocks=2),
                             "spconv sparse-voxel UNet, 5 levels 32-384 (LiDAR / 3D scenes, MSM), 37M parameters",
                             extra="points"),
    "sparse_unet_xs": ModelSpec(_SPARSE, dict(in_channels=4, channels=[16, 32, 64], enc_blocks=1, dec_blocks=1),
                                "spconv sparse-voxel UNet, 3 levels 16-64, for CPU tests and demos", extra="points"),
    "second_8x": ModelSpec("models.second:VoxelBackBone8x",
                           dict(in_channels=4, channels=[16, 32, 64, 64], out_channels=128),
                           "SECOND / VoxelBackBone8x sparse encoder (LiDAR detection backbone), 8x downsampling",
                           extra="points"),
    "merlin_unet": ModelSpec("models.unet2d:MerlinUNet", dict(width=48),
                             "MERLIN despeckling U-Net (SAR, residual log domain), 0.99M parameters"),
    "bilateral": ModelSpec("models.bilateral:BilateralDenoiser", dict(stages=2, patch_size=8, hidden=8),
                           "Filter2Noise attention-guided bilateral filter (CT, the data's units in/out), 2 stages, 3.6k "
                           "parameters"),
    "zsn2n": ModelSpec("models.zsn2n:ZSN2NNet", dict(channels=48),
                       "ZS-N2N noise-predicting CNN (CT baseline, the data's units in/out), 21k parameters"),
}


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def describe(name: str) -> str:
    return _REGISTRY[name].description


def options(name: str) -> dict[str, Any]:
    """The typed options of encoder ``name``: ``{option: type hint}``."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown encoder {name!r}; known: {', '.join(list_models())}")
    spec = _REGISTRY[name]
    return spec.options() if spec.options is not None else signature_options(spec.build_fn())


def create(name: str, **cfg: Any) -> nn.Module:
    """Build encoder ``name`` with ``cfg`` overriding its defaults; the model remembers its config."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown encoder {name!r}; known: {', '.join(list_models())}")
    spec = _REGISTRY[name]
    kwargs = {**spec.defaults, **cfg}
    try:
        model = spec.build_fn()(**kwargs)
    except TypeError as e:
        raise ValueError(f"model: bad options for {name!r}: {e}") from None
    model.config = {"name": name, **kwargs}
    json.dumps(model.config)  # configs must stay JSON serialisable
    return model
