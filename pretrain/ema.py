"""Exponential moving averages of networks (EMA teachers) and their momentum schedules."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_at(step: int, total_steps: int, start: float, end: float) -> float:
    """Linear momentum schedule from ``start`` at step 0 to ``end`` at ``total_steps`` (I-JEPA, ECG-JEPA).

    >>> momentum_at(0, 100, 0.998, 0.9995), momentum_at(100, 100, 0.998, 0.9995)
    (0.998, 0.9995)
    """
    if total_steps <= 0:
        return end
    t = min(max(step / total_steps, 0.0), 1.0)
    return start + (end - start) * t


def cosine_momentum_at(step: int, total_steps: int, start: float, end: float = 1.0) -> float:
    """BYOL's cosine schedule: ``end - (end - start) * (cos(pi t) + 1) / 2``."""
    if total_steps <= 0:
        return end
    t = min(max(step / total_steps, 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * t) + 1.0) / 2.0


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of ``student`` to be updated only by :func:`ema_update`."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for parameters; buffers are copied."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different parameter lists")
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        tb.copy_(sb)
