"""Suite-wide fixtures: the shared real data beside the repository, and a small CPU thread budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared_data(sub: str = "") -> Path:
    """``<repo>/../shared/data/<sub>``: fails in CI (coverage must not silently vanish), skips elsewhere."""
    path = SHARED_DATA / sub
    if not path.exists():
        msg = f"shared test data missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True, scope="session")
def _threads():
    """Two intra-op threads, or the cores shared out among pytest-xdist workers (``make test`` runs ``-n auto``)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: small convolutions, graph batches and spconv's CPU kernels run several
    times faster on one thread than on two that share busy cores. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` or by naming it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def signals_dir() -> Path:
    return shared_data("signals")


@pytest.fixture
def run_cache(tmp_path_factory, monkeypatch):
    """Isolate the embedded-data cache of CLI/loop tests from the user's ~/.cache (shared in the session)."""
    cache = tmp_path_factory.getbasetemp() / "modalities-cache"
    monkeypatch.setenv("MODALITIES_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """An empty embedded-data cache of the module's own (``MODALITIES_CACHE``): what a fresh install starts from."""
    root = tmp_path_factory.mktemp("modalities-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODALITIES_CACHE", str(root))
        yield root
