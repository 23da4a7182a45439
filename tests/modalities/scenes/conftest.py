"""spconv's CPU kernels slow down by 10-100x when two intra-op threads share two busy cores: one thread here."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
