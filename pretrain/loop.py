"""The one training loop, on Lightning Fabric.

Fabric supplies devices, precision (bf16-mixed on CPU and GPU), DDP/FSDP across processes and nodes, and
checkpoint I/O; this file adds what pretraining needs on top:

- AdamW with the recipe's schedules (:mod:`pretrain.schedules`), gradient clipping and accumulation, the
  objective's ``on_step_end`` hook (EMA teachers, schedules);
- the deterministic sample stream of :mod:`pretrain.sampling` (a run with 2 processes sees exactly the batches of a
  1-process run, and a resumed run continues the stream where it stopped);
- torch's generator reseeded from ``(seed, step, rank)`` each step, so no RNG state has to be checkpointed;
- metrics to ``metrics.csv`` (:mod:`pretrain.runlog`) and TensorBoard, the objective's label-free monitor on a fixed held-out batch
  (RankMe and embedding std by default; a denoiser's held-out loss or PSNR), a collapse warning, a progress bar;
- a NaN/Inf guard that stops with one clear line and never writes a checkpoint from a bad state
  (:mod:`pretrain.guards`);
- atomic checkpoints (:mod:`pretrain.checkpoint`) and exact resume.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import models
import modalities
from modalities.base import cache_root, labelled_subset
from pretrain import config as config_mod
from pretrain import micro, objectives
from pretrain.checkpoint import run_hooks, save_checkpoint
from pretrain.config import ConfigError, RunConfig
from pretrain.devices import cpu_has_bf16, cuda_attention_kernels, device_setup, make_fabric
from pretrain.distributed import convert_batch_norm
from pretrain.guards import ConstantLossGuard, TrainingDiverged
from pretrain.monitors import collapsed as is_collapsed
from pretrain.runlog import MetricsCSV, read_metrics
from pretrain.sampling import KeyedDataset, SeededBatches, sample_seed
from pretrain.schedules import fit_schedule, lr_beta1_at, wd_at

# read_metrics, TrainingDiverged and the device helpers are re-exported: the names callers of train() use with it
__all__ = ["CKPT_NAME", "RunResult", "TrainingDiverged", "cpu_has_bf16", "cuda_attention_kernels", "make_optimizer",
           "param_groups", "read_metrics", "train"]

CKPT_NAME = "last.ckpt"


# ----------------------------------------------------------------------------------------------- training

@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_loss: float
    encoder_dir: Path
    rank: int = 0


def param_groups(module: torch.nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict[str, Any]]:
    """Decay matrices and convolution kernels; never biases, norms, registers, mask tokens or positions (unless
    ``decay_all``: every parameter, as a plain ``AdamW(model.parameters())``)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or any(t in name for t in ("registers", "mask_token", "pos_embed", "cls_token"))
        if exempt and not decay_all:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def make_optimizer(objective: torch.nn.Module, o: Any, strategy: str = "auto") -> torch.optim.Optimizer:
    """The run's AdamW: over the objective's own parameter groups if it has them (layer-wise decay), else
    :func:`param_groups`; fused (one kernel over every parameter: ~7x faster than the per-tensor loop for a ViT-S on
    a CPU, 322 -> 44 ms) except under FSDP, whose sharded parameters take the plain implementation."""
    groups = objective.param_groups(o.weight_decay) if hasattr(objective, "param_groups") and not o.decay_all \
        else param_groups(objective, o.weight_decay, o.decay_all)
    kwargs: dict[str, Any] = {"lr": o.lr, "betas": tuple(o.betas), "eps": o.eps}
    if "fsdp" not in str(strategy).lower():
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # a parameter type or device the fused kernel does not take
            pass
    return torch.optim.AdamW(groups, **kwargs)


def prepare_data(cfg: RunConfig, modality: modalities.Modality) -> dict[str, Any]:
    """The data options with ``path`` resolved (the user's ``--data`` or the embedded default), as a dict the
    dataset builders complete with the file conventions they detect (CT units, LiDAR label ids, ...): what the
    run's ``config.yaml`` records."""
    data_cfg = dict(cfg.data)
    if cfg.data.path:
        p = Path(data_cfg["path"]).expanduser()
        if not p.exists():
            raise modalities.DataError(f"{p}: --data path does not exist")
        data_cfg["path"] = str(p.resolve())
    else:
        data_cfg["path"] = str(modality.default_data(cache_root() / modality.name))
    return data_cfg


def _fixed_batch(ds: Dataset, n: int, collate: Any) -> dict[str, Any] | None:
    n = min(n, len(ds))
    if n < 2:
        return None
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
    return collate([ds[int(i)] for i in idx])


def _trial_batch(keyed: KeyedDataset, b: int, collate: Any, fabric: Any, seed: int) -> Any:
    """``b`` real training samples, collated, for the memory probe (keys outside the run's sample stream)."""
    batch = collate([keyed[(i % len(keyed), sample_seed(seed + 1, i))] for i in range(b)])
    batch["step_seed"] = 0
    return fabric.to_device(batch)


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> RunResult:
    """Pretrain ``cfg.model`` with ``cfg.objective`` on ``cfg.modality``; everything lands in ``run_dir``."""
    run_dir = Path(run_dir)
    modality = modalities.get(cfg.modality)
    objective_cls = objectives.get(cfg.objective["name"])
    objectives.check(cfg.objective)  # a misspelt option fails here, not after the data are indexed
    objectives.check_compatible(objective_cls, modality)

    fabric = make_fabric(cfg, run_dir)
    fabric.launch()
    device_setup(cfg, fabric)
    rank0 = fabric.global_rank == 0
    t, o = cfg.train, cfg.optim
    if rank0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
    fabric.barrier()

    data_cfg, train_ds, val_ds = _datasets(cfg, modality, objective_cls, fabric, resume)
    raw, objective, optimizer = _objective_and_optimizer(cfg, train_ds, fabric)
    plan = _micro_plan(cfg, raw, KeyedDataset(train_ds), modality.collate, fabric)
    data_opts = modality.options.of(data_cfg)  # with the file conventions the builders detected
    if rank0 and not resume:
        config_mod.save(RunConfig(**{**cfg.__dict__, "data": data_opts}), run_dir / "config.yaml")

    ckpt_path = run_dir / "checkpoints" / CKPT_NAME
    start_step = _resume_step(ckpt_path, objective, optimizer, fabric, run_dir) if resume else 0
    metrics = MetricsCSV(run_dir / "metrics.csv", resume_step=start_step if resume else None) if rank0 else None
    batches = iter(_loader(cfg, train_ds, plan, start_step, modality.collate, fabric))
    monitor = _fixed_batch(val_ds, t.rankme_samples, modality.collate)
    if monitor is not None:
        monitor = fabric.to_device(monitor)
    bar = None
    if rank0 and progress:
        from tqdm import tqdm
        bar = tqdm(total=t.max_steps, initial=start_step, desc=f"{cfg.modality}/{objective_cls.name}",
                   mininterval=1.0, dynamic_ncols=True, file=sys.stderr)
    watch = _Watch(monitor, metrics, bar)
    constant = ConstantLossGuard(lambda m: fabric.print(m, file=sys.stderr))
    loss_value = float("nan")
    tic, seen = time.perf_counter(), 0
    for step in range(start_step, t.max_steps):
        torch.manual_seed(int(sample_seed(t.seed + 7919 * (fabric.global_rank + 1), step)))
        lr, wd = _set_hyperparameters(optimizer, o, step, t.max_steps)
        loss_mean, scalars, n = _accumulate(objective, raw, batches, plan, cfg, step, fabric)
        seen += n
        grad_norm = _grad_norm(raw)
        constant.check(step + 1, float(loss_mean), grad_norm)
        if not torch.isfinite(loss_mean) or not math.isfinite(grad_norm):
            what = "loss" if not torch.isfinite(loss_mean) else "gradient norm"
            last = f"last good checkpoint: {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written"
            raise TrainingDiverged(f"step {step + 1}: {what} is {float(loss_mean) if what == 'loss' else grad_norm}; "
                                   f"stopped without saving ({last}); lower optim.lr or use optim.clip_grad")
        if o.clip_grad > 0:
            fabric.clip_gradients(objective, optimizer, max_norm=o.clip_grad, error_if_nonfinite=False)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        raw.on_step_end(step + 1, t.max_steps)
        loss_value = float(loss_mean)
        done = step + 1

        row = None
        if rank0 and (done % t.log_every == 0 or done == t.max_steps or done == start_step + 1):
            dt = time.perf_counter() - tic
            row = {"step": done, "loss": loss_value, "lr": lr, "weight_decay": wd, "grad_norm": grad_norm,
                   "samples_per_s": seen / dt if dt > 0 else 0.0, **scalars}
            tic, seen = time.perf_counter(), 0
        watch.after_step(done, t, row, {"step": done, "loss": loss_value, "lr": lr, "weight_decay": wd,
                                        "grad_norm": grad_norm, "samples_per_s": "", **scalars}, raw, fabric)
        if done % t.ckpt_every == 0 or done == t.max_steps:
            _check_finite_params(raw, done)
            save_checkpoint(fabric, ckpt_path, {"objective": objective, "optimizer": optimizer, "step": done}, done)
        run_hooks("after_step", done)
    if bar is not None:
        bar.close()

    encoder_dir = run_dir / "encoder"
    if rank0:
        models.save_pretrained(raw.export_encoder(), encoder_dir, extra={
            "modality": cfg.modality, "objective": objective_cls.name, "data": data_opts.to_dict()})
        raw.export_files(encoder_dir)
    fabric.barrier()
    return RunResult(run_dir, t.max_steps, loss_value, encoder_dir, fabric.global_rank)


def _datasets(cfg: RunConfig, modality: modalities.Modality, objective_cls: Any, fabric: Any,
              resume: bool) -> tuple[dict[str, Any], Dataset, Dataset]:
    """The data options with the detected file conventions, the training set (at the fine-tuning label budget) and
    the held-out set of the monitor; a schedule that does not fit the data is fitted, with a printed line."""
    with fabric.rank_zero_first():
        data_cfg = prepare_data(cfg, modality)
        train_ds = modality.build_dataset(data_cfg, "train", objective_cls.views)
        try:
            val_ds = modality.build_dataset(data_cfg, "val", 0)
        except modalities.DataError as e:  # e.g. records too short to hold out a window: monitor on train windows
            fabric.print(f"warning: no held-out split ({e}); RankMe uses fixed training windows")
            val_ds = modality.build_dataset(data_cfg, "train", 0)
    fraction = cfg.data.label_fraction
    if fraction is not None and fraction < 1.0:  # fine-tuning at a label budget: a stratified subset
        train_ds = labelled_subset(train_ds, fraction, cfg.data.split_seed)
    if len(train_ds) == 0:
        raise modalities.DataError(f"{data_cfg['path']}: no training windows (records too short for the window?)")
    per_image = getattr(objective_cls, "dedups_repeated_images", False) and cfg.objective.get("unique", True)
    for line in fit_schedule(cfg, len(train_ds), one_image_ok=per_image) if not resume else []:
        fabric.print(line, file=sys.stderr)
    return data_cfg, train_ds, val_ds


def _objective_and_optimizer(cfg: RunConfig, train_ds: Dataset, fabric: Any) -> tuple[Any, Any, Any]:
    """The objective around a freshly initialised encoder (the same weights on every process) and its optimiser,
    set up by Fabric; returns ``(raw objective, wrapped objective, optimiser)``."""
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every process
    try:
        encoder = models.create(**cfg.model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    raw = objectives.create(encoder, cfg.objective)
    raw.bind_dataset(train_ds)
    if fabric.world_size > 1:  # BatchNorm statistics of the whole batch, not of each process's share
        convert_batch_norm(raw)
    optimizer = make_optimizer(raw, cfg.optim, cfg.train.strategy)
    objective, optimizer = fabric.setup(raw, optimizer)
    if raw.batch_loss:
        objective.mark_forward_method("embeddings")
    return raw, objective, optimizer


def _micro_plan(cfg: RunConfig, raw: Any, keyed: KeyedDataset, collate: Any, fabric: Any) -> micro.MicroPlan:
    """How each process splits its share of the batch into micro-batches (measured, unless ``train.micro_batch``
    is given); the chosen size is written into ``cfg.train.micro_batch``."""
    t = cfg.train
    per_process = t.batch_size // fabric.world_size
    plan = micro.plan_micro_batches(
        t.micro_batch, per_process, lambda b: _trial_batch(keyed, b, collate, fabric, t.seed),
        raw, fabric, t.memory_budget_gb, micro.local_processes(fabric.world_size, t.num_nodes))
    if t.micro_batch == "auto":
        if fabric.world_size > 1:  # every process splits the same way: the smallest micro-batch any of them chose
            smallest = int(fabric.strategy.all_reduce(torch.tensor(plan.micro, device=fabric.device), reduce_op="min"))
            plan = micro.MicroPlan(smallest, per_process // smallest, plan.budget, plan.measured, plan.why)
        fabric.print(plan.describe(per_process), file=sys.stderr)
        t.micro_batch = plan.micro
    return plan


def _resume_step(ckpt_path: Path, objective: Any, optimizer: Any, fabric: Any, run_dir: Path) -> int:
    """Load the last checkpoint into the objective and optimiser; returns its step."""
    if not ckpt_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no checkpoint at {ckpt_path}")
    state = {"objective": objective, "optimizer": optimizer, "step": 0}
    try:
        fabric.load(ckpt_path, state)
    except Exception as e:  # a corrupt file: say which one
        raise ConfigError(f"{ckpt_path}: cannot load checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    return int(state["step"])


def _loader(cfg: RunConfig, train_ds: Dataset, plan: micro.MicroPlan, start_step: int, collate: Any,
            fabric: Any) -> Any:
    """The sample stream from ``start_step`` on: seeded batches (the same for any number of processes), decoded by
    DataLoader workers."""
    t = cfg.train
    workers = min(t.num_workers, max(0, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))))
    loader = DataLoader(KeyedDataset(train_ds), collate_fn=collate, num_workers=workers,
                        batch_sampler=SeededBatches(len(train_ds), t.batch_size, t.seed, fabric.global_rank,
                                                    fabric.world_size, start_step * cfg.optim.accumulate, plan.chunks),
                        persistent_workers=False)
    return fabric.setup_dataloaders(loader, use_distributed_sampler=False)


def _set_hyperparameters(optimizer: Any, o: Any, step: int, max_steps: int) -> tuple[float, float]:
    """This step's learning rate, weight decay (and Adam beta1 under ``one_cycle``) in every parameter group."""
    lr, beta1 = lr_beta1_at(o, step, max_steps)
    wd = wd_at(step, max_steps, o.weight_decay, o.weight_decay_end)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)  # layer-wise learning-rate decay (fine-tuning)
        g["weight_decay"] = wd if g.get("decay") else 0.0
        if beta1 is not None:
            g["betas"] = (beta1, g["betas"][1])
    return lr, wd


def _accumulate(objective: Any, raw: Any, batches: Any, plan: micro.MicroPlan, cfg: RunConfig, step: int,
                fabric: Any) -> tuple[torch.Tensor, dict[str, float], int]:
    """Forward and backward over one optimiser step's batches (``optim.accumulate`` units of ``plan.chunks``
    micro-batches; a gradient cache where the loss needs the whole batch). Returns the loss averaged over the
    processes, the objective's other scalars and the number of samples seen by all processes."""
    t, o = cfg.train, cfg.optim
    scalars: dict[str, float] = {}
    loss_sum = torch.zeros((), device=fabric.device)
    seen = 0
    for unit in range(o.accumulate):
        chunks = []
        for _ in range(plan.chunks):
            try:
                chunks.append(next(batches))
            except modalities.DataError as e:  # raised in a DataLoader worker: keep the reader's one line
                raise modalities.DataError(worker_message(e)) from None
            chunks[-1]["step_seed"] = sample_seed(t.seed, step * o.accumulate + unit)
        last_unit = unit == o.accumulate - 1
        if plan.chunks > 1 and raw.batch_loss:
            outs = [micro.gradient_cache_step(objective, raw, chunks, fabric, 1.0 / o.accumulate, last_unit)]
        else:
            outs = []
            for i, batch in enumerate(chunks):
                with fabric.no_backward_sync(objective, enabled=not (last_unit and i == len(chunks) - 1)):
                    out = objective(batch)
                    fabric.backward(out["loss"] / (o.accumulate * len(chunks)))
                outs.append(out)
        for out in outs:
            w = 1.0 / (o.accumulate * len(outs))
            loss_sum += out["loss"].detach().float() * w
            for k, v in out.items():
                if k != "loss":
                    scalars[k] = scalars.get(k, 0.0) + float(v) * w
        seen += sum(len(c["seed"]) for c in chunks) * fabric.world_size
    return fabric.all_reduce(loss_sum, reduce_op="mean"), scalars, seen


class _Watch:
    """After each step: the label-free monitor on the fixed held-out batch every ``rankme_every`` steps (RankMe,
    the collapse warning), the metrics row and the progress bar."""

    def __init__(self, monitor: Any, metrics: MetricsCSV | None, bar: Any) -> None:
        self.monitor, self.metrics, self.bar = monitor, metrics, bar
        self.best_rank = 0.0

    def after_step(self, done: int, t: Any, row: dict | None, base_row: dict, raw: Any, fabric: Any) -> None:
        monitor_now = self.monitor is not None and (done % t.rankme_every == 0 or done == t.max_steps)
        if monitor_now:
            watched = monitor_objective(raw, self.monitor, fabric)
            rm = watched.get("rankme")
            collapsed = False
            if rm is not None:
                self.best_rank = max(self.best_rank, rm)
                collapsed = is_collapsed(rm, self.best_rank)
            if fabric.global_rank == 0:
                row = row or base_row
                row.update(watched)
                if rm is not None:
                    row["collapse"] = int(collapsed)
                if self.bar is not None:
                    self.bar.set_postfix_str(f"loss {base_row['loss']:.4f} "
                                             + " ".join(f"{k} {v:.3g}" for k, v in watched.items())
                                             + (" COLLAPSE?" if collapsed else ""))
                if collapsed:
                    fabric.print(f"warning: step {done}: possible collapse (RankMe {rm:.2f}, best {self.best_rank:.2f}, "
                                 f"embedding std {watched.get('embed_std', float('nan')):.4f})")
        if row is not None and self.metrics is not None:
            self.metrics.log(row)
            fabric.log_dict({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}, step=done)
        if self.bar is not None:
            self.bar.update(1)
            if row is not None and not monitor_now:
                self.bar.set_postfix_str(f"loss {base_row['loss']:.4f}")


def _grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))


def _check_finite_params(module: torch.nn.Module, step: int) -> None:
    for name, p in module.named_parameters():
        if not torch.isfinite(p).all():
            raise TrainingDiverged(f"step {step}: parameter {name} is not finite; checkpoint not written")


def worker_message(error: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker (which wraps it in a
    traceback text ending with ``module.Class: message``)."""
    text = str(error).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


@torch.no_grad()
def monitor_objective(objective: Any, batch: dict[str, Any], fabric: Any) -> dict[str, float]:
    """The objective's label-free monitor scalars on the fixed held-out batch, in eval mode and under autocast."""
    was_training = objective.training
    objective.eval()
    with fabric.autocast():
        watched = {k: float(v) for k, v in objective.monitor(batch).items()}
    objective.train(was_training)
    return watched
