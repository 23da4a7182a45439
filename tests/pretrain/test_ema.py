"""EMA teacher: the update formula and the ECG-JEPA momentum schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pretrain.ema import cosine_momentum_at, ema_update, make_teacher, momentum_at


def test_schedule_endpoints_and_midpoint():
    assert momentum_at(0, 1000, 0.998, 0.9995) == 0.998
    assert momentum_at(1000, 1000, 0.998, 0.9995) == 0.9995
    assert momentum_at(500, 1000, 0.998, 0.9995) == pytest.approx(0.99875)
    assert momentum_at(5000, 1000, 0.998, 0.9995) == 0.9995
    assert cosine_momentum_at(0, 10, 0.99) == pytest.approx(0.99)
    assert cosine_momentum_at(5, 10, 0.99) == pytest.approx(0.995)


def test_update_formula_hand_case():
    student = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([[1.0, 2.0]]))
    teacher = make_teacher(student)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([[3.0, -2.0]]))
    ema_update(teacher, student, 0.9)
    # 0.9 * [1, 2] + 0.1 * [3, -2] = [1.2, 1.6]
    assert torch.allclose(teacher.weight, torch.tensor([[1.2, 1.6]]))
    assert not teacher.weight.requires_grad
