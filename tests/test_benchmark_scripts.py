"""The side-by-side speed benchmark's own arithmetic: interleaving, FLOP counting, ratios, the import isolation that
lets a reference checkout's ``models`` package load beside ours, and the GPU suite's command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import reference_speed as rs  # noqa: E402


def test_interleave_alternates_and_drops_warmup() -> None:
    calls: list[str] = []

    def step(name: str, dt: float):
        return lambda: (calls.append(name), dt)[1]

    times = rs.interleave({"reference": step("reference", 2.0), "ours": step("ours", 1.0)}, rounds=3, warmup=1)
    assert calls == ["reference", "ours"] * 4
    assert times == {"reference": [2.0] * 3, "ours": [1.0] * 3}


def test_flops_ratio_and_peak_fraction() -> None:
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(16, 64)
    assert rs.count_flops(lambda: lin(x)) == 2 * 16 * 64 * 32
    row = rs.summarise({"work": "w", "unit": "s/step", "times": {"reference": [3.0, 1.0, 2.0], "ours": [1.0, 0.5, 2.0]},
                        "flops": {"reference": 4e9, "ours": 2e9}}, peak=10.0)
    assert row["ratio"] == 2.0  # medians 2.0 / 1.0
    assert row["fraction_of_fp32_peak"] == {"reference": 0.2, "ours": 0.2}
    assert "| w | 2.000 s/step | 1.000 s/step | 2.00x |" in rs.table([row], bf16=False)


def test_isolated_import_keeps_our_models_package(tmp_path: Path) -> None:
    import models

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("WHOSE = 'reference'\n")
    with rs.isolated_import(tmp_path, ("models",)):
        import importlib

        theirs = importlib.import_module("models")
    assert theirs.WHOSE == "reference"
    assert sys.modules["models"] is models and not hasattr(models, "WHOSE")


def test_gpu_suite_command_line() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--device" in out.stdout and "--quick" in out.stdout
