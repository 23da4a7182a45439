"""``python -m pretrain scenes`` end to end with evaluation: the report's probe section on a fresh install (simulated
rooms) and with ``--probe-data`` (the real SensatUrban / SemanticKITTI probes)."""

from __future__ import annotations

import json

import pytest

from pretrain.cli import main
from tests.conftest import shared_data

SMALL = ["--max-steps", "2", "--quiet", "--set", "train.threads=1", "--set", "train.rankme_every=2",
         "--set", "train.rankme_samples=2", "--set", "data.augment.max_points=1500", "--set", "data.grid_size=0.1",
         "--set", "data.probe_max_points=1000"]


def _probe_rows(run):
    rows = [r for r in json.loads((run / "probes.json").read_text()) if r["task"] == "segmentation"]
    return {r["probe"] for r in rows}, (run / "report.md").read_text()


@pytest.mark.slow
def test_default_report_probes_simulated_rooms(tmp_path, run_cache):
    run = tmp_path / "run"
    assert main(["scenes", "--out", str(run), *SMALL]) == 0
    probes, report = _probe_rows(run)
    assert probes == {"rooms"}
    line = next(x for x in report.splitlines() if x.startswith("- **rooms**"))
    assert "seed 7001" in line and "6 classes present: floor, wall, table, chair, shelf, object" in line
    assert (run_cache / "scenes" / "probe_rooms" / "corpus.json").is_file()


@pytest.mark.slow
def test_probe_data_report_probes_the_real_scenes(tmp_path, run_cache):
    root = shared_data("3d")
    run = tmp_path / "run"
    assert main(["scenes", "--out", str(run), *SMALL, "--probe-data", str(root),
                 "--set", "data.probes=[rooms,corpus,sensaturban,semantickitti]",
                 "--set", "data.probe_grid_size.sensaturban=0.5",
                 "--set", "data.probe_grid_size.semantickitti=1.0"]) == 0
    probes, report = _probe_rows(run)
    assert probes == {"sensaturban", "semantickitti"}
    line = next(x for x in report.splitlines() if x.startswith("- **semantickitti**"))
    assert "classes present: car," in line and "19 classes" not in line
