"""Devices of a run: the Fabric that runs the loop (accelerator, processes, precision, TensorBoard logger), CPU
threads per process, CUDA attention kernels, and whether the CPU computes bf16 natively."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from pretrain.config import RunConfig

__all__ = ["cpu_has_bf16", "cuda_attention_kernels", "device_setup", "make_fabric"]


def make_fabric(cfg: RunConfig, run_dir: Path) -> Any:
    from lightning_fabric import Fabric
    from lightning_fabric.loggers import TensorBoardLogger

    t = cfg.train
    accelerator = t.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    strategy = t.strategy
    n_proc = (t.devices if isinstance(t.devices, int) else 1) * t.num_nodes
    if strategy == "auto" and n_proc > 1:
        strategy = "ddp"  # DDP on CPU uses gloo, on CUDA nccl
    logger = TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version="")
    return Fabric(accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy,
                  precision=t.precision, loggers=[logger])


def cuda_attention_kernels() -> None:
    """Keep ``F.scaled_dot_product_attention`` off cuDNN's kernel on CUDA. cuDNN builds an execution plan for
    every new sequence length, and masked objectives change the visible-token count every step: on an H100 a
    bf16 ViT-XS JEPA step took 146 ms with cuDNN picked by default and 44 ms on flash / memory-efficient
    attention (batch 64, benchmarks/bench_ecg_train.py --device cuda); once its plans were all built, cuDNN was
    no faster (42 ms), so fixed-length models lose nothing measurable."""
    torch.backends.cuda.enable_cudnn_sdp(False)


def device_setup(cfg: RunConfig, fabric: Any) -> None:
    """CUDA attention kernels; CPU threads per process."""
    if fabric.device.type == "cuda":
        cuda_attention_kernels()
    if fabric.device.type != "cpu":
        return
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", fabric.world_size // max(1, cfg.train.num_nodes))))
    torch.set_num_threads(cfg.train.threads or max(1, (os.cpu_count() or 1) // local))
    if cfg.train.precision.startswith("bf16") and not cpu_has_bf16():
        fabric.print(f"warning: train.precision={cfg.train.precision}: this CPU has no bf16 matrix instructions "
                     "(avx512_bf16 / amx_bf16), so bf16 is emulated and several times slower than 32-true (a ViT-XS "
                     "VICReg step: 8.6x on an AMD EPYC without them); use --precision 32-true", file=sys.stderr)


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 matrix products natively (x86 avx512_bf16 or AMX; ARM bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown: say nothing
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16", "bf16"))
