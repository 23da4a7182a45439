"""Fitting a training step into memory: the peak-memory probe, the micro-batch plan and the gradient cache.

``train.batch_size`` is the global batch of one optimiser step, and it is kept whatever the memory: when one
process's share of it does not fit the device's budget, the loop splits it into micro-batches and accumulates
their gradients. Before the first step :func:`plan_micro_batches` runs the objective's forward and backward on
real samples, 2, 4, 8, ... (divisors of the share) until the share itself or the budget is reached, reads the peak
memory each needed (CPU: the process's peak resident set, reset through ``/proc/self/clear_refs``; CUDA: the
allocator's peak) and picks the largest measured micro-batch that fits. The decision is printed and written to ``config.yaml``
(``train.micro_batch``), so a resumed run splits its batches the same way without measuring again.

Splitting is exact for two kinds of loss:

- per-sample means (JEPA, denoisers, equivariance): the mean of equal-sized micro-batch losses is the loss of
  the batch, so plain accumulation gives its gradient. Losses normalised by a count that varies with the samples
  (GROVER's atoms and bonds, MSM's masked sites, E-SSL3D's matched points: exact across processes, where the count
  is summed over them) weight each micro-batch equally when split, so a split step is their batch loss only up to
  the spread of those counts;
- losses over the whole batch (InfoNCE's negatives, VICReg's and Barlow Twins' statistics, KoLeo's
  neighbours), objectives with ``batch_loss``: the gradient cache (Gao et al., "Scaling Deep Contrastive
  Learning Batch Size under Memory Limited Setup", RepL4NLP 2021). The rows of every micro-batch are computed
  without a graph, the loss is computed once on all of them and back-propagated to the rows only, then each
  micro-batch is computed again with a graph and back-propagated with its slice of the rows' gradient. The
  sum over micro-batches is the gradient of the whole batch (torch's RNG state is replayed so dropout draws
  the same masks twice).

Batch-norm statistics are per micro-batch, as they are per process under DDP.
"""

from __future__ import annotations

import ctypes
import gc
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from pretrain.config import ConfigError

GIB = 2**30


# ---------------------------------------------------------------------------------------- memory readings

def _proc_kib(path: str, key: str) -> int | None:
    """The ``key:`` field, in KiB, of a ``/proc`` table (``/proc/self/status``, ``/proc/meminfo``)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _status_kib(key: str) -> int | None:
    return _proc_kib("/proc/self/status", key)


def _meminfo_kib(key: str) -> int | None:
    return _proc_kib("/proc/meminfo", key)


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def _release_freed() -> None:
    """Give memory freed by Python and torch back to the system, so the resident set measures live data."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
        return True
    except OSError:
        return False


def memory_budget(device: torch.device, budget_gb: float, local_processes: int) -> tuple[int, str]:
    """Bytes one process may add at the peak of a training step, and how that figure was chosen.

    ``train.memory_budget_gb`` > 0 is taken as given. On CUDA the default is 85 % of the device's free memory.
    On CPU it is the smaller of half the available memory and a quarter of the total (or of a cgroup limit),
    divided among the processes of the node: CPU throughput stops growing long before such batches, and the
    rest is left to data-loader workers, the monitor batch and the other programs of a shared machine.
    """
    if budget_gb > 0:
        return int(budget_gb * GIB), f"train.memory_budget_gb={budget_gb:g}"
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(0.85 * free), f"85 % of the {free / GIB:.1f} GB free on {device}"
    avail, total = _meminfo_kib("MemAvailable"), _meminfo_kib("MemTotal")
    if avail is None or total is None:
        return 4 * GIB, "4 GB (no /proc/meminfo)"
    total_b = total * 1024
    limit = _cgroup_limit()
    if limit is not None:
        total_b = min(total_b, limit)
    budget = min(avail * 1024 // 2, total_b // 4) // max(1, local_processes)
    return int(budget), (f"min(1/2 of {avail * 1024 / GIB:.1f} GB available, 1/4 of {total_b / GIB:.1f} GB) "
                         f"/ {local_processes} process(es)")


# --------------------------------------------------------------------------------------------- the probe

def _buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_buffers()}


def trial_loss(raw: Any, batch: Any) -> torch.Tensor:
    """The tensor a trial step back-propagates: the loss, or for ``batch_loss`` objectives the rows (their loss
    over the batch is small beside the rows, and may refuse a trial batch that a real one would not)."""
    if getattr(raw, "batch_loss", False):
        rows = raw.embeddings(batch, targets=False)
        return sum(v.float().sum() for v in rows.values() if v.requires_grad)
    return raw(batch)["loss"]


def measure_step(raw: Any, batch: Any, fabric: Any) -> int:
    """Peak bytes that one forward and backward of ``batch`` adds to the process (CPU resident set or CUDA
    allocations). Parameters, gradients and buffers are left as they were."""
    saved = _buffers(raw)
    device = fabric.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _release_freed()
        base = (_status_kib("VmRSS") or 0) * 1024
        if not _reset_peak_rss():
            base = (_status_kib("VmHWM") or 0) * 1024
    try:
        with fabric.autocast():
            loss = trial_loss(raw, batch)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = (_status_kib("VmHWM") or 0) * 1024 - base
    finally:
        for p in raw.parameters():
            p.grad = None
        with torch.no_grad():
            for k, v in raw.named_buffers():
                v.copy_(saved[k])
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return max(0, int(peak))


# ---------------------------------------------------------------------------------------------- the plan

@dataclass
class MicroPlan:
    """How one process's share of a global batch is split: ``chunks`` micro-batches of ``micro`` samples."""

    micro: int
    chunks: int
    budget: int = 0
    measured: dict[int, int] = field(default_factory=dict)
    why: str = ""

    def describe(self, per_process: int) -> str:
        if self.chunks == 1 and not self.measured:
            return f"train.micro_batch={self.micro} (given)"
        fit = ", ".join(f"{b} samples: {m / GIB:.2f} GB" for b, m in sorted(self.measured.items()))
        head = ("the batch fits in one pass" if self.chunks == 1 else
                f"{self.chunks} micro-batches of {self.micro} (gradient accumulation, same global batch)")
        return (f"memory: {per_process} samples per process -> {head}; measured peak {fit}; "
                f"budget {self.budget / GIB:.2f} GB ({self.why})")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan_micro_batches(option: Any, per_process: int, make_batch: Callable[[int], Any], raw: Any, fabric: Any,
                       budget_gb: float, local_processes: int) -> MicroPlan:
    """Choose the micro-batch size for a process's share ``per_process`` of the global batch.

    ``option`` is ``train.micro_batch``: an integer that divides ``per_process`` (used as given), or
    ``"auto"`` (measure with ``make_batch(b)``, a real batch of ``b`` samples). Raises ConfigError in one line
    when even the smallest micro-batch does not fit, or when the objective cannot be split and the share does
    not fit. An objective with ``splittable = False`` (Mixed Barlow Twins) is never split.
    """
    splittable = getattr(raw, "splittable", True)
    if option != "auto":
        micro = int(option)
        if micro < 1 or per_process % micro:
            raise ConfigError(f"train.micro_batch: {micro} does not divide the {per_process} samples of each "
                              f"process's batch; use a divisor ({', '.join(map(str, divisors(per_process)))}) or auto")
        if micro < per_process and not splittable:
            raise ConfigError(f"train.micro_batch: {raw.name} with these options cannot be split into micro-batches "
                              f"(its loss mixes samples across the batch); use {per_process} or a smaller train.batch_size")
        return MicroPlan(micro, per_process // micro)
    budget, why = memory_budget(fabric.device, budget_gb, local_processes)
    measured = probe_sizes(per_process, make_batch, raw, fabric, budget)
    fitting = [b for b, m in measured.items() if m <= budget]
    smallest = min(measured)
    if not splittable:
        if not fitting or max(fitting) != per_process:
            biggest = max(measured)
            raise ConfigError(
                f"train.batch_size: {raw.name} with these options cannot be split into micro-batches and "
                f"{per_process} samples do not fit the memory budget of {budget / GIB:.1f} GB ({why}; {biggest} "
                f"samples measured {measured[biggest] / GIB:.2f} GB); lower train.batch_size or raise "
                "train.memory_budget_gb")
        return MicroPlan(per_process, 1, budget, measured, why)
    if not fitting:
        raise ConfigError(
            f"train.micro_batch: even {smallest} sample(s) need {measured[smallest] / GIB:.2f} GB at peak, over the "
            f"memory budget of {budget / GIB:.2f} GB ({why}); use a smaller model or shorter samples, raise "
            f"train.memory_budget_gb, or a device with more memory")
    micro = max(fitting)
    return MicroPlan(micro, per_process // micro, budget, measured, why)


def probe_sizes(per_process: int, make_batch: Callable[[int], Any], raw: Any, fabric: Any, budget: int) -> dict[int, int]:
    """Peak memory of trial steps on growing micro-batches: divisors of ``per_process`` from 2, each at least
    double the last, until the share itself is measured or the next size is predicted (from the last two) to
    need more than 80 % of ``budget``. Small trials under-read the cost of a sample (on a ViT-XS ECG step: 5 MB a
    sample between 2 and 4, 16 MB between 2 and 64, where 256 then took 4.2 GB), so the chosen size is one that
    was measured, not extrapolated."""
    chain: list[int] = []
    for d in divisors(per_process):
        if d >= min(2, per_process) and (not chain or d >= 2 * chain[-1] or d == per_process):
            chain.append(d)
    measured: dict[int, int] = {}
    for b in chain:
        if len(measured) >= 2:
            (b1, m1), (b2, m2) = sorted(measured.items())[-2:]
            slope = max((m2 - m1) / (b2 - b1), m2 / b2 / 4)
            if m2 + slope * (b - b2) > 0.8 * budget:
                break
        elif len(measured) == 1 and next(iter(measured.values())) > 0.4 * budget:
            break  # the second trial (at most double the first) could pass the budget
        measured[b] = measure_step(raw, make_batch(b), fabric)
        if measured[b] > budget:
            break
    return measured


# ------------------------------------------------------------------------------------ the gradient cache

def merge_loss_keys(chunks: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries ``keys`` of the whole batch from its micro-batches (lists and tensors concatenated)."""
    out: dict[str, Any] = {}
    for k in keys:
        parts = [c[k] for c in chunks if k in c]
        if len(parts) != len(chunks):
            continue
        if isinstance(parts[0], torch.Tensor):
            out[k] = torch.cat(parts)
        else:
            out[k] = [item for part in parts for item in part]
    return out


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def gradient_cache_step(module: Any, raw: Any, chunks: list[dict[str, Any]], fabric: Any, scale: float,
                        sync: bool) -> dict[str, torch.Tensor]:
    """Accumulate ``scale`` times the gradient of ``raw``'s loss over the concatenation of ``chunks`` (a batch
    split into micro-batches), holding the graph of one micro-batch at a time. ``module`` is the Fabric-wrapped
    objective (``embeddings`` marked as a forward method); ``sync``: the last backward reduces gradients across
    processes. Returns the loss outputs, detached.

    The loss's own graph (projectors, which batch-normalise over the whole batch) is back-propagated together
    with the last micro-batch, so that under DDP one synchronised backward reaches every parameter."""
    device = fabric.device
    states, rows = [], []
    with torch.no_grad():
        for c in chunks:
            states.append(_rng_state(device))
            with fabric.autocast():
                rows.append(module.embeddings(c))
    sizes = [next(iter(r.values())).shape[0] for r in rows]
    leaves = {}
    for k in rows[0]:
        full = torch.cat([r[k] for r in rows])
        leaves[k] = full.detach().requires_grad_(full.is_floating_point())
    del rows
    with fabric.autocast():
        out = raw.loss_from(leaves, merge_loss_keys(chunks, raw.loss_keys))
    loss = out["loss"] * scale
    scaler = getattr(getattr(fabric, "_precision", None), "scaler", None)
    if scaler is not None:  # 16-mixed: the scaled loss, as fabric.backward would (the optimiser step unscales)
        loss = scaler.scale(loss)
    wanted = [k for k, v in leaves.items() if v.requires_grad]
    found = torch.autograd.grad(loss, [leaves[k] for k in wanted], retain_graph=True, allow_unused=True)
    row_grads = {k: g for k, g in zip(wanted, found) if g is not None}
    start = 0
    for i, (c, n) in enumerate(zip(chunks, sizes)):
        last = i == len(chunks) - 1
        _set_rng_state(states[i], device)
        with fabric.no_backward_sync(module, enabled=not (sync and last)):
            with fabric.autocast():
                live = module.embeddings(c, targets=False)
            pairs = [(v, row_grads[k][start:start + n].to(v.dtype)) for k, v in live.items()
                     if v.requires_grad and k in row_grads]
            if last:  # the loss's parameters (projectors) in the same backward as the last micro-batch
                pairs.append((loss, None))
            torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
        start += n
    return {k: v.detach() for k, v in out.items()}


def local_processes(world: int, num_nodes: int) -> int:
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world // max(1, num_nodes))))
