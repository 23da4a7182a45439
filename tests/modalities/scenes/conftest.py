"""spconv's CPU kernels slow down by 10-100x when two intra-op threads share two busy cores: one thread here."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _scenes_one_thread(one_thread):
    yield
