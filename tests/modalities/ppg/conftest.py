"""Indexes of the data these tests read go to a cache shared by the session's tests, never to ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "modalities-cache"
    monkeypatch.setenv("MODALITIES_CACHE", str(cache))
    return cache
