"""MERLIN (deepdespeckling) weights: a plain state dict whose layer names are already ours (models/unet2d.py).

The file holds no sensor constants; they are those of the published model whose file name it carries (``stripmap``,
``spotlight``, ``sentinel_tops``), and a file of another name is refused rather than given a guessed log range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.converters import ConversionError, register
from models.registry import create
from models.unet2d import PUBLISHED_MERLIN, MerlinUNet


@register("merlin", "deepdespeckling MERLIN U-Net weights (stripmap.pth, spotlight.pth, sentinel_tops.pth)")
def build(obj: Any, path: Path) -> tuple[MerlinUNet, dict[str, Any]]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path}: not a MERLIN state dict (expected a dict of tensors, got "
                              f"{type(obj).__name__})")
    name = path.stem
    if name not in PUBLISHED_MERLIN:
        raise ConversionError(f"{path}: the file name does not say which MERLIN model it is (its log range depends "
                              f"on the sensor); name it one of {', '.join(f'{k}.pth' for k in PUBLISHED_MERLIN)}")
    spec = PUBLISHED_MERLIN[name]
    model = create("merlin_unet", width=48, log_min=spec["log_min"], log_max=spec["log_max"], eps=1e-3)
    try:
        model.load_state_dict({str(k): v for k, v in obj.items()}, strict=True)
    except RuntimeError as e:
        raise ConversionError(f"{path}: weights do not fit the MERLIN U-Net ({str(e).splitlines()[0][:160]})") \
            from None
    return model, {"sensor": spec["sensor"]}
