"""Learning-rate, Adam beta1 and weight-decay schedules of the training loop, and fitting them to a run.

- ``schedule: cosine`` (default): linear warm-up from 0 over ``warmup_steps``, cosine decay to ``min_lr``;
- ``schedule: one_cycle``: PyTorch's ``OneCycleLR`` (cosine warm-up from ``lr * warmup_start``, cosine anneal to
  ``min_lr``; Adam's beta1 cycling with ``beta1_cycle``), the schedule of reference code such as Filter2Noise's;
- weight decay: a cosine ramp from ``weight_decay`` to ``weight_decay_end`` (ECG-JEPA: 0.01 -> 0.1).

The loop computes every value from the step alone, so nothing of the schedule is checkpointed.
"""

from __future__ import annotations

import math

from pretrain.config import OptimConfig, RunConfig

__all__ = ["fit_schedule", "lr_at", "lr_beta1_at", "one_cycle_at", "wd_at"]


def lr_at(step: int, total: int, lr: float, min_lr: float, warmup: int) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def one_cycle_at(step: int, total: int, lr: float, min_lr: float, warmup: int, start: float,
                 beta1_cycle: tuple[float, float] | None = None) -> tuple[float, float | None]:
    """(lr, beta1) of PyTorch's ``OneCycleLR`` (two phases, cosine annealing) at ``step``: ``lr * start`` -> ``lr``
    over steps 0 .. warmup - 1, then -> ``min_lr`` at step ``total - 1``; beta1 ``high`` -> ``low`` -> ``high`` for
    ``beta1_cycle = (low, high)`` (None without it)."""
    def anneal(a: float, b: float, t: float) -> float:
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, t))))

    peak = max(0, warmup - 1)
    if step <= peak:
        t, lrs = (step / peak if peak else 1.0), (lr * start, lr)
    else:
        t, lrs = (step - peak) / max(1, total - 1 - peak), (lr, min_lr)
    beta1 = None
    if beta1_cycle is not None:
        low, high = float(beta1_cycle[0]), float(beta1_cycle[1])
        beta1 = anneal(high, low, t) if step <= peak else anneal(low, high, t)
    return anneal(*lrs, t), beta1


def lr_beta1_at(o: OptimConfig, step: int, total: int) -> tuple[float, float | None]:
    """The recipe's (lr, beta1) at ``step`` (beta1 None: as configured)."""
    if o.schedule == "one_cycle":
        return one_cycle_at(step, total, o.lr, o.min_lr, o.warmup_steps, o.warmup_start, o.beta1_cycle)
    return lr_at(step, total, o.lr, o.min_lr, o.warmup_steps), None


def wd_at(step: int, total: int, start: float, end: float) -> float:
    """Cosine ramp of the weight decay from ``start`` to ``end`` (ECG-JEPA: 0.01 -> 0.1)."""
    t = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def fit_schedule(cfg: RunConfig, n_train: int, one_image_ok: bool = False) -> list[str]:
    """Fit the recipe's schedule to this run, in place, and say what changed (one line each).

    A warm-up longer than half the run would keep the learning rate far below its peak for the whole run (the
    ECG recipe's 10,000 warm-up steps at ``--max-steps 50`` never pass 0.5 % of it): it is scaled to 10 % of
    the run. Fewer training samples than a global batch is named (every batch repeats samples), except one image
    for a denoiser that filters a repeated image once per step (``one_image_ok``: per-image zero-shot training).
    """
    o, t = cfg.optim, cfg.train
    lines = []
    if o.warmup_steps > t.max_steps // 2:
        new = max(1, t.max_steps // 10)
        frac = t.max_steps / o.warmup_steps
        why = (f"the learning rate would never pass {o.lr * frac:.3g}, {100 * frac:.2g} % of optim.lr={o.lr:.3g}"
               if o.warmup_steps >= t.max_steps else "the learning rate would peak after half of the run")
        lines.append(f"warning: optim.warmup_steps={o.warmup_steps} is over half of the run's {t.max_steps} steps "
                     f"({why}); using {new} (10 % of the run), written to config.yaml; set optim.warmup_steps <= "
                     f"{t.max_steps // 2} to choose another")
        o.warmup_steps = new
    if n_train < t.batch_size and not (one_image_ok and n_train == 1):
        lines.append(f"warning: {n_train} training sample(s) for a global batch of {t.batch_size} (train.batch_size): "
                     "every batch repeats samples; give more or longer records, or lower train.batch_size")
    return lines
